//! Invariants: normalisation is a fixed point, and a path the decision calls public never
//! reads as a protected one to a lenient backend (double decoding, `\`, `;`, dot segments).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::decision::{decide, Credentials, Decision};

fuzz_target!(|data: &[u8]| {
    let Ok(target) = ords_guard::path::normalise(data) else {
        return;
    };
    let again =
        ords_guard::path::normalise(target.path.as_bytes()).expect("a normalised path normalises");
    assert_eq!(again.path, target.path, "not a fixed point");
    let reg = ords_guard_fuzz::registry();
    for method in ["GET", "POST"] {
        if decide(reg, method, &target.path, Credentials::None) == Decision::ForwardPublic {
            let seen = ords_guard_fuzz::lenient_backend_view(&target.path);
            assert!(
                reg.protecting(&seen, method).is_none(),
                "public path {:?} reads as protected {:?} to a lenient backend",
                target.path,
                seen
            );
        }
    }
});
