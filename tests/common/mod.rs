//! Test harness: a real backend (hyper) and the real `ords-guard` binary, each on an
//! ephemeral loopback port, and an HTTP client.
#![allow(dead_code)]

pub mod idp;
pub mod oidc;
pub mod otlp;
pub mod pki;
pub mod redis;
pub use pki::*;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ords_guard::config::Algorithm;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the backend received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as on the wire.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn has_header_like(&self, prefix: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().replace('_', "-").starts_with(prefix))
    }
}

pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections the proxy opened and then closed.
    pub closed: Arc<std::sync::atomic::AtomicUsize>,
}

impl Backend {
    /// A backend answering 200 `backend ok`; a path containing `/slow` answers after 5 s
    /// (to exceed a short `upstream_read_ms`).
    pub async fn start() -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let closes = closed.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let closes = closes.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let target = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.as_str().to_string())
                                .unwrap_or_default();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.as_str().to_string(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect();
                            let slow = target.contains("/slow");
                            log.lock().unwrap().push(Seen {
                                method: req.method().to_string(),
                                target,
                                headers,
                            });
                            let _ = req.into_body().collect().await;
                            if slow {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"backend ok"),
                            )))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    closes.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                });
            }
        });
        Backend { addr, seen, closed }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests()
            .last()
            .cloned()
            .expect("the backend received no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A loopback port free now, and never handed out before in this test binary: the kernel
/// may give a just-released port to the next `bind(0)`, and two tests running in parallel
/// must not both be told to listen on it (one guard's admin port answered another's egress
/// requests with 404 that way).
pub fn free_port() -> u16 {
    static ISSUED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut issued = ISSUED.lock().unwrap_or_else(|e| e.into_inner());
        if !issued.contains(&port) {
            issued.push(port);
            return port;
        }
    }
}

/// A registered test client and its plaintext secret.
pub struct TestClient {
    pub id: String,
    pub secret: String,
}

/// The registry every test starts from: the ORDS example plus a write privilege, an
/// open privilege, and clients with known secrets.
pub const REGISTRY: &str = r#"
privileges:
  - name: example_priv
    roles: [example_role]
    patterns: ["/example/*"]
    label: Example
  - name: example_write
    roles: [example_admin]
    patterns: ["/example/orders/*"]
    methods: [POST, PUT, PATCH, DELETE]
  - name: open_priv
    patterns: ["/open/*"]
clients:
  - name: Example Client
    client_id: example-client
    secrets: ["{EXAMPLE_HASH}"]
    roles: [example_role]
  - name: Admin Client
    client_id: admin-client
    secrets: ["{ADMIN_HASH}", "{ADMIN_OLD_HASH}"]
    roles: [example_role, example_admin]
    token_lifetime_seconds: 600
  - name: Disabled Client
    client_id: disabled-client
    secrets: ["{EXAMPLE_HASH}"]
    roles: [example_role]
    disabled: true
"#;

pub const EXAMPLE_SECRET: &str = "example-secret-0123456789abcdefghijklmnop";
pub const ADMIN_SECRET: &str = "admin-secret-0123456789abcdefghijklmnopqrs";
/// The admin client's previous secret, still valid during rotation (argon2id slot).
pub const ADMIN_OLD_SECRET: &str = "correct horse battery staple";

pub fn registry_yaml() -> String {
    use ords_guard::oauth::secret::{hash, Scheme};
    REGISTRY
        .replace(
            "{EXAMPLE_HASH}",
            &hash(EXAMPLE_SECRET.as_bytes(), Scheme::Sha256),
        )
        .replace(
            "{ADMIN_HASH}",
            &hash(ADMIN_SECRET.as_bytes(), Scheme::Sha256),
        )
        .replace(
            "{ADMIN_OLD_HASH}",
            &hash(ADMIN_OLD_SECRET.as_bytes(), Scheme::Argon2id),
        )
}

pub struct Options {
    pub upstream: String,
    pub base_path: &'static str,
    pub unmatched: &'static str,
    pub algorithm: Algorithm,
    pub audience: Option<&'static str>,
    pub read_ms: u64,
    /// `timeouts.upstream_connect_ms`.
    pub connect_ms: u64,
    pub registry: String,
    /// More lines under `timeouts:` (two-space indented).
    pub timeouts: String,
    /// More top-level YAML (`limits:`, `tls:`, ...).
    pub extra: String,
    /// Set when the listeners serve TLS: the CA the test client trusts, and which
    /// listeners are https.
    pub tls: Option<TlsClient>,
    /// Environment variables for the process (`SSL_CERT_FILE`, ...).
    pub env: Vec<(&'static str, String)>,
    /// The proxy's worker threads (`threads`).
    pub threads: usize,
}

#[derive(Clone)]
pub struct TlsClient {
    pub ca_pem: String,
    pub proxy: bool,
    pub admin: bool,
}

impl Options {
    pub fn new(backend: &Backend) -> Options {
        Options {
            upstream: format!("http://{}", backend.addr),
            base_path: "/",
            unmatched: "allow",
            algorithm: Algorithm::ES256,
            audience: None,
            read_ms: 30000,
            connect_ms: 1000,
            registry: registry_yaml(),
            timeouts: String::new(),
            extra: String::new(),
            tls: None,
            env: Vec::new(),
            threads: 2,
        }
    }
}

/// The real binary, running.
pub struct Guard {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
    pub http: reqwest::Client,
    pub base: String,
    /// `http://` or `https://` and the admin address.
    pub admin_base: String,
}

pub fn config_text(o: &Options, proxy: SocketAddr, admin: SocketAddr) -> String {
    format!(
        "listen: \"{proxy}\"\nadmin_listen: \"{admin}\"\nthreads: {}\nupstream: \"{}\"\nbase_path: \"{}\"\nunmatched: {}\ntimeouts:\n  upstream_connect_ms: {}\n  upstream_read_ms: {}\n  shutdown_grace_ms: 5000\n{}{}token:\n  issuer: ords-guard\n{}  algorithm: {}\n  signing_key_file: keys/signing.pem\n  key_id: test-1\n{}",
        o.threads,
        o.upstream,
        o.base_path,
        o.unmatched,
        o.connect_ms,
        o.read_ms,
        o.timeouts,
        o.extra,
        o.audience.map(|a| format!("  audience: {a}\n")).unwrap_or_default(),
        o.algorithm.as_str(),
        o.registry
    )
}

pub fn http_client() -> reqwest::Client {
    client_trusting(None)
}

/// A client that trusts `ca_pem` (and only the system roots besides).
pub fn client_trusting(ca_pem: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20));
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

impl Guard {
    pub async fn start(o: Options) -> Guard {
        let dir = tempfile::tempdir().unwrap();
        let (proxy, admin) = Guard::prepare(&dir, &o);
        let config = dir.path().join("ords-guard.yaml");
        std::fs::write(&config, config_text(&o, proxy, admin)).unwrap();
        Guard::spawn_with(
            dir,
            config,
            (proxy, admin),
            o.base_path,
            o.tls.as_ref(),
            &o.env,
        )
        .await
    }

    /// Write the keys (`dir/keys`) and pick the ports; the caller writes the config.
    pub fn prepare(dir: &tempfile::TempDir, o: &Options) -> (SocketAddr, SocketAddr) {
        let keys = ords_guard::oauth::keys::generate(o.algorithm);
        ords_guard::oauth::keys::write_generated(&dir.path().join("keys"), &keys).unwrap();
        let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        (proxy, admin)
    }

    /// Start the binary on `config` and wait until it is ready.
    pub async fn spawn(
        dir: tempfile::TempDir,
        config: PathBuf,
        proxy: SocketAddr,
        admin: SocketAddr,
        base_path: &str,
    ) -> Guard {
        Guard::spawn_tls(dir, config, proxy, admin, base_path, None).await
    }

    pub async fn spawn_tls(
        dir: tempfile::TempDir,
        config: PathBuf,
        proxy: SocketAddr,
        admin: SocketAddr,
        base_path: &str,
        tls: Option<&TlsClient>,
    ) -> Guard {
        Guard::spawn_with(dir, config, (proxy, admin), base_path, tls, &[]).await
    }

    async fn spawn_with(
        dir: tempfile::TempDir,
        config: PathBuf,
        (proxy, admin): (SocketAddr, SocketAddr),
        base_path: &str,
        tls: Option<&TlsClient>,
        env: &[(&'static str, String)],
    ) -> Guard {
        let log = dir.path().join("ords-guard.log");
        let child = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
            ))
            .spawn()
            .expect("start ords-guard");
        let scheme = |on: bool| if on { "https" } else { "http" };
        let base = format!(
            "{}://{proxy}{}",
            scheme(tls.is_some_and(|t| t.proxy)),
            base_path.trim_end_matches('/')
        );
        let mut g = Guard {
            child,
            proxy,
            admin,
            dir,
            config,
            log,
            http: client_trusting(tls.map(|t| t.ca_pem.as_str())),
            base,
            admin_base: format!("{}://{admin}", scheme(tls.is_some_and(|t| t.admin))),
        };
        g.wait_ready().await;
        g
    }

    /// Poll `/readyz` until 200 (bounded), failing with the process's output.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/readyz", self.admin_base);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("ords-guard exited with {status}: {}", self.output());
            }
            let ready = matches!(self.http.get(&url).send().await, Ok(r) if r.status() == 200);
            if ready && tokio::net::TcpStream::connect(self.proxy).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ords-guard not ready in 30 s: {}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The output once it holds `needle`: log lines reach stdout through a writer thread,
    /// up to ~10 ms after what they describe (bounded by `eventually`).
    pub async fn output_with(&self, needle: &str) -> String {
        eventually(&format!("{needle:?} in the log: {}", self.output()), || {
            let out = self.output();
            async move { out.contains(needle) }
        })
        .await;
        self.output()
    }

    pub fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.log).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("stdout:\n{out}\nstderr:\n{err}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait (bounded) for the process to exit; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "ords-guard did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin_base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample line of `/metrics`, e.g. `ords_guard_requests_total{decision="forwarded"}`.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// Poll `sample` on /metrics until `ok` holds for its value (bounded).
    pub async fn wait_metric(&self, sample: &str, ok: impl Fn(f64) -> bool) {
        eventually(
            &format!("{sample} to change: {}", self.output()),
            || async { ok(self.metric(sample).await) },
        )
        .await;
    }

    /// GET `path` with `Authorization: Bearer token`.
    pub async fn get_as(&self, path: &str, token: impl std::fmt::Display) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Rewrite the config's registry part and send SIGHUP; returns once the reload counter
    /// for `result` moved (bounded wait on a condition, not a sleep).
    pub async fn reload_with(&self, registry: &str, result: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let head = text.split("\nprivileges:").next().unwrap();
        // Write atomically, as config management tools do, so no half-written file is read.
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, format!("{head}\n{}", registry.trim_start())).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
        let sample = format!("ords_guard_config_reloads_total{{result=\"{result}\"}}");
        let before = self.metric(&sample).await;
        self.signal("HUP");
        self.wait_metric(&sample, |v| v > before).await;
    }

    /// A token for `client` (client_secret_post), optionally narrowed by `scope`.
    pub async fn token(&self, id: &str, secret: &str, scope: Option<&str>) -> String {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let r = self
            .http
            .post(self.url("/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "token request failed: {}",
            r.text().await.unwrap()
        );
        let v: serde_json::Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Send raw bytes (for request targets no HTTP client would send) and return the status
    /// line's code and the whole response.
    pub async fn raw(&self, request: &[u8]) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.proxy).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .expect("response within 10 s");
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, text)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP client the `oauth2` crate is driven with: no proxy, and no redirects (a token
/// request must not be sent on to wherever one points).
pub fn oauth2_http() -> oauth2::reqwest::Client {
    oauth2::reqwest::Client::builder()
        .no_proxy()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Run an `ords-guard` subcommand (`check`, `clients list`, ...) on `config` and collect
/// its output.
pub fn ords_guard_cli(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// Poll `done` until it holds, for at most 15 s (a bound on a condition, not a sleep as
/// synchronisation); panic naming `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(Instant::now() < deadline, "waited 15 s for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sign arbitrary claims with the guard's own signing key (to forge expired, wrong-issuer...
/// tokens that are otherwise perfectly signed).
pub fn sign_es256(keys: &Path, kid: &str, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(keys.join("signing.pem")).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(
        &h,
        claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap()
}

pub fn now() -> u64 {
    ords_guard::oauth::token::now()
}

/// The `Content-Length` of a response head (0 when absent), for tests reading raw responses.
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}
