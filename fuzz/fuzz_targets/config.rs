//! Config parsing and validation: any text gives a config or errors with positions, never a
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/nonexistent/fuzz.yaml");
    if let Ok((cfg, src)) = ords_guard::config::parse(text, path) {
        if let Err(ds) = ords_guard::registry::compile(&cfg, &src) {
            for line in src.render_all(&ds) {
                assert!(line.starts_with("/nonexistent/fuzz.yaml"), "{line}");
            }
        }
    }
});
