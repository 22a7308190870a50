//! An identity provider's JWK Set, as fetched: no panic on any bytes; a parsed set holds at
//! most MAX_KEYS keys; choosing a key for any kid and algorithm, and checking any signature
//! with it, never panics, and a signature of the wrong length never verifies.
#![no_main]
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use ords_guard::oauth::jwks::{KeySet, DEFAULT_ALGORITHMS, MAX_KEYS};

fuzz_target!(|data: &[u8]| {
    let Ok(set) = KeySet::parse(data, &DEFAULT_ALGORITHMS) else {
        return;
    };
    assert!(set.len() <= MAX_KEYS);
    let kid = std::str::from_utf8(&data[..data.len().min(8)]).ok();
    for alg in DEFAULT_ALGORITHMS.iter().copied().chain([Algorithm::HS256]) {
        for kid in [kid, None, Some("k")] {
            if let Ok(key) = set.select(kid, alg) {
                assert!(key.fits(alg));
                assert!(!key.verify(alg, data, &data[..data.len().min(7)]));
            }
        }
    }
});
