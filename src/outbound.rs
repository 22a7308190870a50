//! The outbound HTTP client: what ords-guard fetches itself (identity providers' JWK Sets,
//! SPEC §9; token requests next). reqwest on the rustls and ring pingora already builds,
//! TLS verified against the system roots or a given CA file, redirects never followed,
//! and every exchange bounded: a deadline for the whole of it (connect, head and body) and
//! a cap on the body read, checked as it streams, so a slow or huge answer costs little.

use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Whom a client trusts for `https://`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The system's CA certificates (read once per process).
    System,
    /// Only these (an entry's `ca_file`).
    Only(Vec<CertificateDer<'static>>),
}

/// How a client checks the server's certificate (`token_tls` in SPEC §10, as the
/// ingress's `upstream_tls`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tls {
    pub trust: Trust,
    /// Verify the certificate for this name instead of the URL's host. The SNI sent is
    /// still the URL's host (none for an IP literal): reqwest takes it from the URL.
    pub server_name: Option<String>,
    /// `insecure_skip_verify`: any certificate is accepted (handshake signatures are
    /// still checked).
    pub skip_verify: bool,
}

impl Tls {
    pub fn trusting(trust: Trust) -> Tls {
        Tls {
            trust,
            server_name: None,
            skip_verify: false,
        }
    }
}

/// What an exchange got back, the body complete and within its cap.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("no complete answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the body is over the {0}-byte limit")]
    TooLarge(usize),
    /// Connecting, TLS or HTTP failed; the cause chain, without the URL.
    #[error("{0}")]
    Transport(String),
}

fn system_roots() -> &'static Result<rustls::RootCertStore, String> {
    static ROOTS: OnceLock<Result<rustls::RootCertStore, String>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let certs = rustls_native_certs::load_native_certs()
            .map_err(|e| format!("cannot read the system CA certificates: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        let (_added, _unusable) = roots.add_parsable_certificates(certs);
        if roots.is_empty() {
            return Err("the system has no usable CA certificates: install ca-certificates, or give ca_file".into());
        }
        Ok(roots)
    })
}

/// A client that verifies servers per `tls`, follows no redirect and gives up on any
/// exchange after `deadline`. Build one per distinct `tls` and reuse it: it pools its
/// connections.
pub fn client(tls: &Tls, deadline: Duration) -> Result<reqwest::Client, String> {
    let roots = match &tls.trust {
        Trust::System => system_roots().clone()?,
        Trust::Only(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots
                    .add(c.clone())
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if tls.server_name.is_none() && !tls.skip_verify {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let name = match &tls.server_name {
            Some(n) => Some(
                rustls::pki_types::ServerName::try_from(n.clone())
                    .map_err(|_| format!("server_name `{n}` is not a DNS name or IP address"))?,
            ),
            None => None,
        };
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let verifier = Verifier {
            webpki: (!tls.skip_verify).then_some(webpki),
            name,
            provider,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(deadline)
        .connect_timeout(deadline)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(2)
        .user_agent(concat!("ords-guard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(causes)
}

/// `e` and its sources, joined: reqwest's own text ("error sending request") says little.
/// The URL is left out; callers name what they fetched.
fn causes(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// Send `req` and read the answer, its body at most `max_body` bytes, all within
/// `deadline` (a redirect is an answer like any other: the caller refuses it).
pub async fn send(
    req: reqwest::RequestBuilder,
    max_body: usize,
    deadline: Duration,
) -> Result<Answer, FetchError> {
    let exchange = async {
        let mut resp = req.send().await.map_err(|e| transport(e, deadline))?;
        if resp.content_length().is_some_and(|n| n > max_body as u64) {
            return Err(FetchError::TooLarge(max_body));
        }
        let status = resp.status().as_u16();
        let headers = std::mem::take(resp.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(e, deadline))? {
            if body.len() + chunk.len() > max_body {
                return Err(FetchError::TooLarge(max_body));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(deadline)),
    }
}

fn transport(e: reqwest::Error, deadline: Duration) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout(deadline);
    }
    FetchError::Transport(causes(e))
}

/// A secret file's content less one trailing LF or CRLF (SPEC §10).
pub fn secret_from(bytes: &[u8]) -> &[u8] {
    let b = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    b.strip_suffix(b"\r")
        .filter(|_| b.len() < bytes.len())
        .unwrap_or(b)
}

/// RFC 6749 §2.3.1: id and secret are form-encoded before they are joined for Basic.
pub fn basic_credentials(id: &str, secret: &str) -> String {
    use base64::Engine;
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A `client_secret_file` (SPEC §10, §16), read again for every request so a rotated
/// Secret is used at once; the last secret read stays in use while the file cannot be read.
pub struct SecretFile {
    path: PathBuf,
    kept: Mutex<Option<String>>,
}

impl SecretFile {
    pub fn new(path: PathBuf) -> SecretFile {
        SecretFile {
            path,
            kept: Mutex::new(None),
        }
    }

    /// The secret now, or why there is none (the message names the file, never the secret).
    pub fn read(&self) -> Result<String, String> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match std::fs::read(&self.path) {
            Ok(bytes) => match String::from_utf8(secret_from(&bytes).to_vec()) {
                Ok(s) if !s.is_empty() => {
                    *kept = Some(s.clone());
                    Ok(s)
                }
                _ => Err(format!(
                    "client_secret_file {} is empty or not UTF-8",
                    self.path.display()
                )),
            },
            Err(e) => kept.clone().ok_or_else(|| {
                format!(
                    "cannot read client_secret_file {}: {e}",
                    self.path.display()
                )
            }),
        }
    }
}

/// webpki's verification for another name (`server_name`), or none at all
/// (`insecure_skip_verify`); the handshake's signatures are checked either way.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    name: Option<rustls::pki_types::ServerName<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match &self.webpki {
            None => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            Some(v) => v.verify_server_cert(
                end_entity,
                intermediates,
                self.name.as_ref().unwrap_or(server_name),
                ocsp,
                now,
            ),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_lose_one_trailing_newline() {
        assert_eq!(secret_from(b"s3cret\n"), b"s3cret");
        assert_eq!(secret_from(b"s3cret\r\n"), b"s3cret");
        assert_eq!(secret_from(b"s3cret\n\n"), b"s3cret\n");
        assert_eq!(secret_from(b"s3cret\r"), b"s3cret\r");
        assert_eq!(secret_from(b"s3cret"), b"s3cret");
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // "id:1" / "p w" form-encoded first: "id%3A1:p+w".
        assert_eq!(basic_credentials("id:1", "p w"), "Basic aWQlM0ExOnArdw==");
    }
}
