//! An identity provider's introspection answer (SPEC §16): no panic on any status and
//! body; a verdict only from HTTP 200 with a JSON object holding a boolean `active`; an
//! active verdict names a client a header can carry and is remembered no longer than
//! `cache_seconds`; an inactive one at most `cache_seconds` (or 10 s).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::tokens::introspection::{verdict, Verdict, INACTIVE_SECONDS};
use ords_guard::tokens::issuer::Issuer;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.split_first() {
        Some((s, rest)) => (if *s < 200 { 200 } else { 100 + u16::from(*s) * 2 }, rest),
        None => (200, data),
    };
    let issuer = Issuer {
        name: "corp".into(),
        issuer: "https://idp.test".into(),
        audience: if data.len() % 2 == 0 { vec!["api".into()] } else { vec![] },
        algorithms: vec![],
        roles_claim: Some("/roles".into()),
        client_id_claim: None,
        privileges: None,
        tenants: vec![],
        allowed_skew_seconds: 30,
        max_age_seconds: 0,
    };
    let Ok((v, until)) = verdict(&issuer, 60, status, body, NOW) else {
        return;
    };
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(body).expect("a verdict from JSON");
    assert!(answer.get("active").is_some_and(serde_json::Value::is_boolean));
    assert!(until <= NOW + 60.max(INACTIVE_SECONDS));
    if let Verdict::Active(c) = v {
        assert_eq!(answer["active"], true);
        assert!(until > NOW, "an active answer is never already over");
        assert!(!c.client_id.is_empty() && c.client_id.len() <= 256);
        assert!(c.client_id.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }
});
