//! Bearer/JWT parsing and verification: no panic, and nothing but a token minted with the
//! signing key verifies, whether it names the proxy's issuer or an identity provider's
//! (the fixture registry has one, routed by `iss`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reg = ords_guard_fuzz::registry();
    let header = [data];
    let creds = ords_guard::access::decision::credentials(&header);
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(
            reg.tokens.as_ref().unwrap().verify(text).is_err(),
            "a fuzzed token verified: {text:?}"
        );
    }
    let d = ords_guard::access::decision::decide(reg, "GET", "/ords/hr/example/1", creds);
    assert!(
        !d.is_forwarded(),
        "a fuzzed token opened a privilege: {d:?}"
    );
});
