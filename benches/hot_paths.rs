//! Hot paths of a guarded request: normalisation, pattern lookup, token verification and
//! minting, and the whole decision. `cargo bench --bench hot_paths`; ratios are computed from
//! one run (docs/src/performance.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ords_guard::access::decision::{self, Credentials};
use ords_guard::access::pattern::{Matcher, Methods, Pattern};
use ords_guard::config::{self, Algorithm};
use ords_guard::oauth::issuer::Unverified;
use ords_guard::oauth::token::{now, Claims};
use ords_guard::registry::{self, Registry};
use std::hint::black_box;

fn registry(alg: Algorithm, dir: &std::path::Path) -> Registry {
    ords_guard::oauth::keys::write_generated(dir, &ords_guard::oauth::keys::generate(alg)).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream: http://127.0.0.1:3\nbase_path: /ords/hr\ntoken:\n  algorithm: {}\n  signing_key_file: signing.pem\n  key_id: k\nprivileges:\n  - name: example_priv\n    roles: [example_role]\n    patterns: [\"/example/*\"]\nclients:\n  - name: Example Client\n    client_id: c1\n    secrets: [\"sha256:{}\"]\n    roles: [example_role]\n",
        alg.as_str(),
        "0".repeat(64)
    );
    let (cfg, src) = config::parse(&yaml, &dir.join("bench.yaml")).unwrap();
    registry::compile(&cfg, &src)
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .registry
}

fn claims(reg: &Registry) -> Claims {
    let n = now();
    Claims {
        iss: reg.tokens.as_ref().unwrap().issuer.clone(),
        sub: "c1".into(),
        client_id: "c1".into(),
        aud: None,
        iat: n,
        nbf: n,
        exp: n + 3600,
        jti: "0123456789abcdef0123456789abcdef".into(),
        roles: vec!["example_role".into()],
        scope: "example_priv".into(),
    }
}

const ALGS: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::RS256,
];

fn normalisation(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalise");
    for (name, raw) in [
        ("plain", "/ords/hr/example/employees/7?fields=name,salary"),
        (
            "encoded",
            "/ords/hr//example/%7Eemp/%C3%A9t%C3%A9/7/history?x=%2F",
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| ords_guard::access::path::normalise(black_box(raw.as_bytes())).unwrap())
        });
    }
    g.finish();
}

/// The connection guard scans every request head before pingora parses it.
fn request_head(c: &mut Criterion) {
    let head = b"GET /ords/hr/example/employees/7?fields=name HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: application/json\r\nAuthorization: Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtMSJ9.eyJpc3MiOiJvcmRzLWd1YXJkIiwic3ViIjoiZXhhbXBsZS1jbGllbnQiLCJjbGllbnRfaWQiOiJleGFtcGxlLWNsaWVudCJ9.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
    c.bench_function("request_head_scan_420B", |b| {
        b.iter(|| ords_guard::serve::conn::scan_head(black_box(head), 16 * 1024, 100))
    });
    c.bench_function("request_head_check_420B", |b| {
        b.iter(|| ords_guard::serve::conn::head::check(black_box(head)).unwrap())
    });
}

fn pattern_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("pattern_lookup");
    for n in [10usize, 1_000, 100_000] {
        let mut m = Matcher::default();
        for i in 0..n {
            let p = if i % 2 == 0 {
                format!("/svc{i}/items/*")
            } else {
                format!("/svc{i}/items/summary")
            };
            m.insert(&Pattern::parse(&p).unwrap(), Methods::ALL, i)
                .unwrap();
        }
        let hit = format!("/svc{}/items/42/detail", (n / 2) & !1);
        g.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, p| {
            b.iter(|| m.lookup(black_box(p), "GET").unwrap())
        });
        g.bench_with_input(
            BenchmarkId::new("miss", n),
            &"/other/items/42/detail".to_string(),
            |b, p| b.iter(|| m.lookup(black_box(p), "GET")),
        );
    }
    g.finish();
}

fn tokens(c: &mut Criterion) {
    let mut verify = c.benchmark_group("verify");
    let dirs: Vec<_> = ALGS.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let regs: Vec<_> = ALGS
        .iter()
        .zip(&dirs)
        .map(|(a, d)| registry(*a, d.path()))
        .collect();
    for (alg, reg) in ALGS.iter().zip(&regs) {
        let token = reg.tokens.as_ref().unwrap().mint(&claims(reg)).unwrap();
        verify.bench_function(BenchmarkId::new("uncached", alg.as_str()), |b| {
            b.iter(|| {
                reg.tokens
                    .as_ref()
                    .unwrap()
                    .verify_uncached(black_box(&token))
                    .unwrap()
            })
        });
        verify.bench_function(BenchmarkId::new("cached", alg.as_str()), |b| {
            b.iter(|| {
                reg.tokens
                    .as_ref()
                    .unwrap()
                    .verify(black_box(&token))
                    .unwrap()
            })
        });
    }
    verify.finish();
    let mut mint = c.benchmark_group("mint");
    for (alg, reg) in ALGS.iter().zip(&regs) {
        let cl = claims(reg);
        mint.bench_function(alg.as_str(), |b| {
            b.iter(|| reg.tokens.as_ref().unwrap().mint(black_box(&cl)).unwrap())
        });
    }
    mint.finish();
}

/// A registry that trusts an identity provider holding `alg`'s public key, and a token that
/// provider issued (minted with the same key under the provider's issuer).
fn issuer_registry(alg: Algorithm, dir: &std::path::Path) -> (Registry, String) {
    let own = registry(alg, dir);
    std::fs::write(dir.join("idp.json"), own.tokens.as_ref().unwrap().jwks()).unwrap();
    let yaml = "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream: http://127.0.0.1:3\nbase_path: /ords/hr\nissuers:\n  - name: idp\n    issuer: https://idp.bench\n    jwks_file: idp.json\n    roles_claim: /roles\nprivileges:\n  - name: example_priv\n    roles: [example_role]\n    patterns: [\"/example/*\"]\n";
    let (cfg, src) = config::parse(yaml, &dir.join("issuer.yaml")).unwrap();
    let reg = registry::compile(&cfg, &src).unwrap().registry;
    let token = own
        .tokens
        .as_ref()
        .unwrap()
        .mint(&Claims {
            iss: "https://idp.bench".into(),
            ..claims(&own)
        })
        .unwrap();
    (reg, token)
}

fn issuer_tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("issuer_verify");
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let dir = tempfile::tempdir().unwrap();
        let (reg, token) = issuer_registry(alg, dir.path());
        let entry = &reg.issuers[0];
        let keys = entry.keys.current().unwrap();
        g.bench_function(BenchmarkId::new("uncached", alg.as_str()), |b| {
            b.iter(|| {
                let u = Unverified::parse(black_box(&token), 8192).unwrap();
                entry.issuer.verify(&u, &keys, now()).unwrap()
            })
        });
        let header = format!("Bearer {token}");
        let decide = || {
            decision::decide(
                &reg,
                "GET",
                "/ords/hr/example/employees/7",
                decision::credentials(&[header.as_bytes()]),
            )
        };
        assert!(decide().is_forwarded(), "verified once: now in the cache");
        g.bench_function(BenchmarkId::new("cached", alg.as_str()), |b| {
            b.iter(|| reg.issuer_tokens.get(black_box(&token), now()).unwrap())
        });
        g.bench_function(BenchmarkId::new("cached_decision", alg.as_str()), |b| {
            b.iter(|| {
                let d = decision::decide(
                    &reg,
                    "GET",
                    black_box("/ords/hr/example/employees/7"),
                    decision::credentials(&[header.as_bytes()]),
                );
                assert!(d.is_forwarded());
                d
            })
        });
    }
    // SPEC §16's target: a remembered opaque token decides within 1.2x of a cached JWT.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("as.secret"), "s").unwrap();
    let yaml = "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream: http://127.0.0.1:3\nbase_path: /ords/hr\nissuers:\n  - name: as\n    issuer: https://as.bench\n    roles_claim: /roles\n    introspection: {url: \"http://127.0.0.1:4/introspect\", client_id: ords-guard, client_secret_file: as.secret}\nprivileges:\n  - name: example_priv\n    roles: [example_role]\n    patterns: [\"/example/*\"]\n";
    let (cfg, src) = config::parse(yaml, &dir.path().join("opaque.yaml")).unwrap();
    let reg = registry::compile(&cfg, &src).unwrap().registry;
    // 32 random bytes in base64url: the shape of most providers' opaque tokens.
    let token = "Zq3Xw9-Lr2VbK7tYcP0aHs5MfE1uJdN8oGiT4yQxWkA";
    let claims = ords_guard::tokens::issuer::IssuerClaims {
        client_id: "svc".into(),
        subject: Some("svc".into()),
        scopes: vec!["example_priv".into()],
        roles: vec!["example_role".into()],
        exp: u64::MAX,
    };
    reg.issuers[0].introspector.as_ref().unwrap().remember(
        token,
        ords_guard::tokens::introspection::Verdict::Active(std::sync::Arc::new(claims)),
        now() + 3600,
    );
    let header = format!("Bearer {token}");
    g.bench_function("cached_decision_opaque", |b| {
        b.iter(|| {
            let d = decision::decide(
                &reg,
                "GET",
                black_box("/ords/hr/example/employees/7"),
                decision::credentials(&[header.as_bytes()]),
            );
            assert!(d.is_forwarded());
            d
        })
    });
    g.finish();
}

fn whole_decision(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(Algorithm::ES256, dir.path());
    let token = reg.tokens.as_ref().unwrap().mint(&claims(&reg)).unwrap();
    let header = format!("Bearer {token}");
    let mut g = c.benchmark_group("decision");
    g.bench_function("authorised_es256_cached", |b| {
        b.iter(|| {
            let target =
                ords_guard::access::path::normalise(black_box(b"/ords/hr/example/employees/7?x=1"))
                    .unwrap();
            let d = decision::decide(
                &reg,
                "GET",
                &target.path,
                decision::credentials(&[header.as_bytes()]),
            );
            assert!(d.is_forwarded());
            d
        })
    });
    g.bench_function("unauthenticated", |b| {
        b.iter(|| {
            decision::decide(
                &reg,
                "GET",
                black_box("/ords/hr/example/employees/7"),
                Credentials::None,
            )
        })
    });
    g.finish();
}

/// SPEC §13's local store: one check of two limits (per client and per address) for a
/// client among 10,000, all under their limits (the bar: ≤ 1 µs).
fn rate_limit(c: &mut Criterion) {
    use ords_guard::config::{LimitBy, LimitStore};
    use ords_guard::ratelimit::{check, now, Caller, Limit, Outcome};
    let limit = |name: &str, by| {
        let shape = (1_000_000_000, 1, 1_000_000_000);
        Limit::new(name, by, None, shape, LimitStore::Local)
    };
    let limits = [
        limit("per_client", LimitBy::Client),
        limit("per_addr", LimitBy::Address),
    ];
    let ids: Vec<String> = (0..10_000).map(|i| format!("client-{i}")).collect();
    let addr = Some("10.1.2.3".parse().unwrap());
    for id in &ids {
        let caller = Caller {
            privilege: Some(0),
            client: Some(id),
            addr,
        };
        let _ = check(&limits, &caller, now());
    }
    let mut i = 0;
    c.bench_function("rate_limit/local_two_limits", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let caller = Caller {
                privilege: Some(0),
                client: Some(&ids[i]),
                addr,
            };
            let o = check(black_box(&limits), &caller, now());
            assert!(matches!(o, Outcome::Counted { .. }));
        })
    });
    c.bench_function("rate_limit/local_one_limit_by_client", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let caller = Caller {
                privilege: Some(0),
                client: Some(&ids[i]),
                addr: None,
            };
            check(black_box(&limits[..1]), &caller, now())
        })
    });
}

criterion_group!(
    benches,
    rate_limit,
    normalisation,
    request_head,
    pattern_lookup,
    tokens,
    issuer_tokens,
    whole_decision
);
criterion_main!(benches);
