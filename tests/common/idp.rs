//! An identity provider played by the tests: P-256 keys that sign tokens, and a JWKS server
//! (hyper, optionally https) whose answer the test switches between good keys and the
//! failure modes a real provider or the network can show.

use super::now;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const ISS: &str = "https://idp.test/realms/corp";

/// Signing keys by `kid`.
pub struct Idp {
    keys: Vec<(String, EcdsaKeyPair)>,
    rng: ring::rand::SystemRandom,
}

fn p256() -> EcdsaKeyPair {
    let rng = ring::rand::SystemRandom::new();
    let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
    let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap()
}

impl Idp {
    /// One key, `corp-1`.
    pub fn new() -> Idp {
        Idp::with_kids(&["corp-1"])
    }

    pub fn with_kids(kids: &[&str]) -> Idp {
        Idp {
            keys: kids.iter().map(|k| (k.to_string(), p256())).collect(),
            rng: ring::rand::SystemRandom::new(),
        }
    }

    /// The public JWK of `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        let pair = &self.keys.iter().find(|(k, _)| k == kid).unwrap().1;
        let p = pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])})
    }

    /// A JWK Set of the keys named.
    pub fn jwks_of(&self, kids: &[&str]) -> Value {
        json!({"keys": kids.iter().map(|k| self.jwk(k)).collect::<Vec<_>>()})
    }

    /// The JWK Set of every key.
    pub fn jwks(&self) -> Value {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        self.jwks_of(&kids)
    }

    /// A token signed by `kid`, with the usual claims and `extra` merged in (null removes
    /// a claim).
    pub fn token(&self, kid: &str, extra: Value) -> String {
        let mut claims = json!({"iss": ISS, "aud": "orders-api", "sub": "user-7", "azp": "orders-app",
            "iat": now() - 5, "exp": now() + 300});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let pair = &self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, p)| p)
            .unwrap_or(&self.keys[0].1);
        let s = pair.sign(&self.rng, input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(s.as_ref()))
    }
}

/// What the JWKS server answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with this JWK Set (and Cache-Control, when given).
    Keys(Value, Option<&'static str>),
    /// This status, a short body.
    Status(u16),
    /// 302 to this location.
    Redirect(String),
    /// 200 with these bytes as the body.
    Body(Vec<u8>),
    /// 200 and a body that never ends (a drip of spaces).
    Endless,
    /// Nothing at all, ever.
    Hang,
}

pub struct JwksServer {
    pub addr: SocketAddr,
    pub https: bool,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Plain http on loopback (allowed by SPEC §9 for loopback addresses).
    pub async fn start(answer: Answer) -> JwksServer {
        JwksServer::serve(answer, None).await
    }

    /// https with `pki`'s certificate.
    pub async fn start_tls(answer: Answer, pki: &super::Pki) -> JwksServer {
        JwksServer::serve(answer, Some(super::pki::server_config(pki))).await
    }

    async fn serve(answer: Answer, tls: Option<Arc<rustls::ServerConfig>>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        let https = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (a, h, acceptor) = (a.clone(), h.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                        let (a, h) = (a.clone(), h.clone());
                        async move {
                            h.fetch_add(1, Ordering::AcqRel);
                            let answer = a.lock().unwrap().clone();
                            Ok::<_, hyper::Error>(respond(answer).await)
                        }
                    });
                    match acceptor {
                        Some(acc) => {
                            if let Ok(tls) = acc.accept(tcp).await {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), svc)
                                    .await;
                            }
                        }
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), svc)
                                .await;
                        }
                    }
                });
            }
        });
        JwksServer {
            addr,
            https,
            answer,
            hits,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/jwks", self.addr)
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Acquire)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn respond(answer: Answer) -> hyper::Response<Body> {
    use http_body_util::BodyExt;
    let full = |b: Vec<u8>| Full::new(Bytes::from(b)).boxed();
    let mut r = hyper::Response::builder();
    match answer {
        Answer::Keys(v, cache) => {
            r = r.header("content-type", "application/json");
            if let Some(c) = cache {
                r = r.header("cache-control", c);
            }
            r.body(full(v.to_string().into_bytes())).unwrap()
        }
        Answer::Status(s) => r.status(s).body(full(b"no keys here".to_vec())).unwrap(),
        Answer::Redirect(to) => r
            .status(302)
            .header("location", to)
            .body(full(Vec::new()))
            .unwrap(),
        Answer::Body(b) => r.body(full(b)).unwrap(),
        Answer::Endless => r.body(drip().boxed()).unwrap(),
        Answer::Hang => std::future::pending().await,
    }
}

/// A body stream of one space every 100 ms, forever.
fn drip() -> impl hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + Sync {
    struct Drip(tokio::time::Interval);
    impl hyper::body::Body for Drip {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_tick(cx)
                .map(|_| Some(Ok(hyper::body::Frame::data(Bytes::from_static(b" ")))))
        }
    }
    Drip(tokio::time::interval(std::time::Duration::from_millis(100)))
}
