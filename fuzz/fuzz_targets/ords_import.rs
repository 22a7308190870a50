//! `ords-guard import ords` (SPEC §12): no panic and no hang on any input; an import that
//! succeeds prints YAML that reads back as the `privileges:` and `clients:` it names, every
//! client with a hash and a printed secret; an error names a line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::config::{ClientConfig, PrivilegeConfig};
use ords_guard::import::{import_ords, Input};

#[derive(serde::Deserialize)]
struct Out {
    privileges: Vec<PrivilegeConfig>,
    clients: Vec<ClientConfig>,
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match import_ords(&[Input {
        name: "f.sql",
        text: &text,
    }]) {
        Ok(got) => {
            let out: Out = serde_yaml::from_str(&got.yaml).expect("the YAML reads back");
            assert_eq!(out.clients.len(), got.credentials.len());
            for c in &out.clients {
                assert!(c.secrets.iter().all(|s| s.starts_with("sha256:")));
            }
            let _ = out.privileges;
            for n in &got.notes {
                assert!(n.starts_with("f.sql:"), "{n}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(
                    e.starts_with("f.sql:") || e.starts_with("privilege `"),
                    "{e}"
                );
            }
        }
    }
});
