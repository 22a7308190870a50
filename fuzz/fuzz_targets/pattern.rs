//! Pattern compile and match: no panic; a compiled pattern matches its own literal path and
//! (for wildcards) everything below it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::access::pattern::{Kind, Matcher, Methods, Pattern};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(2, '\n');
    let (pattern, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let Ok(p) = Pattern::parse(pattern) else {
        return;
    };
    let mut m = Matcher::default();
    m.insert(&p, Methods::ALL, 1u8)
        .expect("one pattern cannot conflict");
    let own = if p.key.is_empty() {
        "/".to_string()
    } else {
        p.key.clone()
    };
    assert_eq!(m.lookup(&own, "GET"), Some(&1), "{p} does not match {own}");
    if p.kind == Kind::Wildcard {
        assert_eq!(m.lookup(&format!("{}/x/y", p.key), "PATCH"), Some(&1));
    }
    let _ = m.lookup(path, "GET");
});
