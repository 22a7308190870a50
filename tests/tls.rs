//! TLS (issue #6): the proxy and admin listeners over HTTPS with certificates that reload,
//! and an https upstream verified by default, against a CA file when given. Certificates
//! are generated here, at test time.

mod common;

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::Path;

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const LISTENER_TLS: &str = "tls:\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\nadmin_tls:\n  cert_file: tls/cert.pem\n  key_file: tls/key.pem\n";

#[tokio::test]
async fn proxy_and_admin_serve_https_and_certificates_reload() {
    let backend = Backend::start().await;
    let first = pki("first");
    let o = Options {
        extra: LISTENER_TLS.into(),
        tls: Some(TlsClient {
            ca_pem: first.ca.clone(),
            proxy: true,
            admin: true,
        }),
        ..Options::new(&backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir(&tls_dir).unwrap();
    std::fs::write(tls_dir.join("cert.pem"), &first.cert).unwrap();
    std::fs::write(tls_dir.join("key.pem"), &first.key).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    // Readiness was polled over https on the admin port, trusting only the test CA.
    let mut g = Guard::spawn_tls(dir, config, proxy, admin, "/", o.tls.as_ref()).await;

    // The whole ORDS flow over https: token, then the protected call.
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let r = g.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(backend.last().header("x-forwarded-proto"), Some("https"));

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = http_client()
        .get(format!("http://{proxy}/public/x"))
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| r.status() != 200),
        "plain http was served"
    );

    // A broken certificate is rejected at reload; the old one keeps serving.
    let failures = "ords_guard_config_reloads_total{result=\"failure\"}";
    let before = g.metric(failures).await;
    write_atomically(&tls_dir_of(&g).join("cert.pem"), "not a certificate\n");
    g.wait_metric(failures, |v| v > before).await;
    let fresh = client_trusting(Some(&first.ca));
    let r = fresh.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // New certificate from another CA: swapped in by the file watcher, no restart.
    let second = pki("second");
    write_atomically(&tls_dir_of(&g).join("key.pem"), &second.key);
    write_atomically(&tls_dir_of(&g).join("cert.pem"), &second.cert);
    let trusts_second = client_trusting(Some(&second.ca));
    eventually("the new certificate to be served", || async {
        matches!(trusts_second.get(g.url("/public/x")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let admin_now = trusts_second
        .get(format!("https://{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin_now.status(), 200);
    // ...and the old one is gone for new connections (a fresh client: `g.http` keeps a
    // pooled connection from before).
    let trusts_first = client_trusting(Some(&first.ca));
    assert!(trusts_first.get(g.url("/public/x")).send().await.is_err());

    // From here on the harness (metrics on the admin port) must trust the new CA too.
    g.http = trusts_second.clone();

    // Dropping `tls:` in a reload would leave the bound TLS listener without a
    // certificate: refused, and HTTPS keeps working.
    // Waited for by its message, not the failure count: the key and certificate swap above
    // is two writes, and a reload between them (new key, old certificate) also fails and
    // may be counted late.
    let before = g.metric(failures).await;
    let text = std::fs::read_to_string(&g.config).unwrap();
    write_atomically(&g.config, &text.replace(LISTENER_TLS, ""));
    eventually("the reload that would drop tls to be refused", || {
        let out = g.output();
        async move { out.contains("cannot drop it in a reload") }
    })
    .await;
    assert!(g.metric(failures).await > before);
    let r = client_trusting(Some(&second.ca))
        .get(g.url("/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn tls_dir_of(g: &Guard) -> std::path::PathBuf {
    g.dir.path().join("tls")
}

/// An https backend answering `tls backend ok`.
async fn tls_backend(p: &Pki) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(p));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                    Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"tls backend ok",
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

async fn guard_for_https_upstream(
    backend: &Backend,
    upstream: SocketAddr,
    upstream_tls: &str,
    ca: &str,
) -> Guard {
    let o = Options {
        upstream: format!("https://{upstream}"),
        extra: upstream_tls.into(),
        ..Options::new(backend)
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = Guard::prepare(&dir, &o);
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
    Guard::spawn(dir, config, proxy, admin, "/").await
}

#[tokio::test]
async fn https_upstreams_are_verified_by_default_and_against_a_ca_file() {
    let unused = Backend::start().await;
    let p = pki("upstream");
    let upstream = tls_backend(&p).await;

    // No CA file: the system roots do not know the test CA, so no connection is made.
    let g = guard_for_https_upstream(&unused, upstream, "", &p.ca).await;
    let r = g.http.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        g.metric("ords_guard_upstream_errors_total{kind=\"connect\"}")
            .await,
        1.0
    );
    drop(g);

    // With its CA: verified and served.
    let g = guard_for_https_upstream(
        &unused,
        upstream,
        "upstream_tls:\n  ca_file: ca.pem\n",
        &p.ca,
    )
    .await;
    let r = g.http.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "tls backend ok");
    drop(g);

    // The right CA but a name the certificate does not carry: refused.
    let g = guard_for_https_upstream(
        &unused,
        upstream,
        "upstream_tls:\n  ca_file: ca.pem\n  server_name: other.example\n",
        &p.ca,
    )
    .await;
    let r = g.http.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);

    // A CA that signed nothing here: refused.
    let other = pki("other");
    let g2 = guard_for_https_upstream(
        &unused,
        upstream,
        "upstream_tls:\n  ca_file: ca.pem\n",
        &other.ca,
    )
    .await;
    let r = g2.http.get(g2.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    drop(g2);

    // Verification switched off on purpose: served, and the log says why that is unsafe.
    let g = guard_for_https_upstream(
        &unused,
        upstream,
        "upstream_tls:\n  insecure_skip_verify: true\n",
        &p.ca,
    )
    .await;
    let r = g.http.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        g.output().contains("is not verified"),
        "no warning: {}",
        g.output()
    );
    assert_eq!(unused.count(), 0);
}
