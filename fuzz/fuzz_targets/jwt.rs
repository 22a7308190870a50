//! Bearer/JWT parsing and verification: no panic, and nothing but a token minted with the
//! signing key verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reg = ords_guard_fuzz::registry();
    let header = [data];
    let creds = ords_guard::decision::credentials(&header);
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(
            reg.tokens.verify(text).is_err(),
            "a fuzzed token verified: {text:?}"
        );
    }
    let _ = ords_guard::decision::decide(reg, "GET", "/ords/hr/example/1", creds);
});
