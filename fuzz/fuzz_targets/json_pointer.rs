//! The role and client-id claim pointers (RFC 6901) and the role-list reader: no panic on
//! any pointer or claims; a pointer the config accepts finds in the claims exactly what
//! serde_json's own `Value::pointer` finds in the same object; role lists hold no empty
//! names.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::oauth::issuer::{claim_at, is_json_pointer, names};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // The pointer up to the first newline, the claims after it.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(pointer) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let valid = is_json_pointer(pointer);
    assert_eq!(valid, valid && pointer.starts_with('/'));
    let Ok(Value::Object(claims)) =
        serde_json::from_slice::<Value>(&data[(split + 1).min(data.len())..])
    else {
        return;
    };
    let found = claim_at(&claims, pointer);
    if valid {
        let doc = Value::Object(claims.clone());
        assert_eq!(found, doc.pointer(pointer), "pointer {pointer:?}");
    }
    for split in [&[' ', ','][..], &[' ']] {
        assert!(names(found, split).iter().all(|n| !n.is_empty()));
    }
});
