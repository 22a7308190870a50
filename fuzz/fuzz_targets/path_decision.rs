//! Invariants: normalisation is a fixed point, and a path the decision calls public never
//! reads as a protected one to a lenient backend (double decoding, `\`, `;`, dot segments),
//! under `path_parameters: reject` and `strip` (SPEC §11) alike.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::access::decision::{decide, Credentials, Decision};

fuzz_target!(|data: &[u8]| {
    for reg in [
        ords_guard_fuzz::registry(),
        ords_guard_fuzz::strip_registry(),
    ] {
        let Ok(target) = ords_guard::access::path::normalise_with(data, reg.path_parameters) else {
            continue;
        };
        let again =
            ords_guard::access::path::normalise_with(target.path.as_bytes(), reg.path_parameters)
                .expect("a normalised path normalises");
        assert_eq!(
            (&again.path, &again.stripped),
            (&target.path, &target.stripped),
            "not a fixed point"
        );
        for method in ["GET", "POST"] {
            if decide(reg, method, target.decision_path(), Credentials::None)
                == Decision::ForwardPublic
            {
                // What the upstream receives is the path with its parameters.
                for seen in ords_guard_fuzz::lenient_backend_views(&target.path) {
                    assert!(
                        reg.protecting(&seen, method).is_none(),
                        "public path {:?} (decided as {:?}) reads as protected {:?} to a lenient backend",
                        target.path,
                        target.decision_path(),
                        seen
                    );
                }
            }
        }
    }
});
