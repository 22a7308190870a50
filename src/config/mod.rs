//! The YAML registry: typed schema (SPEC §2) and parsing with positions.
//!
//! Parsing only checks shape (unknown keys, types). Meaning — duplicates, references,
//! patterns, hashes, key files — is checked when the registry is compiled
//! (`registry::compile`), which reports [`Diagnostic`]s by key path; [`Source`] turns a
//! path back into `file:line:column`.

mod locate;

pub use locate::{Locations, Position};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The ingress: where protected requests arrive. Optional when `egress` is set (SPEC
    /// §10: a config may serve only legacy callers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub admin_listen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// The backend the ingress protects; required with `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// How requests reach `upstream` (SPEC §17), whatever the client spoke.
    #[serde(default, skip_serializing_if = "is_default")]
    pub upstream_protocol: UpstreamProtocol,
    #[serde(default = "default_base_path")]
    pub base_path: String,
    /// HTTP/2 beside HTTP/1.1 on the proxy and egress listeners (SPEC §17): ALPN `h2` on
    /// TLS, prior knowledge (h2c) on plain ones. `false`: HTTP/1.1 only.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub http2: bool,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub limits: Limits,
    /// Serve the proxy over HTTPS (beyond SPEC: certificate and key files, reloaded on change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Serve the admin listener over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_tls: Option<TlsConfig>,
    /// How an `https://` upstream is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<UpstreamTlsConfig>,
    #[serde(default)]
    pub unmatched: Unmatched,
    #[serde(default, skip_serializing_if = "is_default")]
    pub path_parameters: PathParameters,
    /// CIDRs of proxies (an ingress) whose `X-Forwarded-For` names the client (SPEC §4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// The proxy's own token endpoint and keys; optional when `issuers` is set (SPEC §9:
    /// then ords-guard mints nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenConfig>,
    /// Identity providers whose tokens are accepted besides ours (SPEC §9).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<IssuerConfig>,
    /// Remote APIs called on legacy callers' behalf, with tokens ords-guard fetches (SPEC §10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressConfig>,
    /// The decision offered to a proxy already in the path (SPEC §14): check endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz: Option<AuthzConfig>,
    /// Traces exported over OTLP/HTTP (SPEC §15); without it nothing is exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
    /// Requests per client or address, counted here or in Redis (SPEC §13).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimitConfig>,
    /// Where `store: redis` limits count (SPEC §13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_store: Option<RateLimitStoreConfig>,
    /// Where revocations are kept (SPEC §16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationConfig>,
    #[serde(default)]
    pub privileges: Vec<PrivilegeConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// A second file holding more `clients` entries (a YAML list), so client hashes can live
    /// in a Kubernetes Secret while the registry is a ConfigMap. Relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

fn default_base_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub upstream_connect_ms: u64,
    pub upstream_read_ms: u64,
    /// A pooled keep-alive connection to the upstream is closed after this long unused.
    pub upstream_idle_ms: u64,
    /// A request head must arrive whole within this, counted from the connection's start
    /// or from the head's first byte: else 408.
    pub client_header_ms: u64,
    /// A keep-alive connection waiting for its next request is closed after this long.
    pub client_idle_ms: u64,
    /// One request from its whole head to the end of its response, both sides together:
    /// 408 while its body is still arriving, 504 while the upstream is awaited, cut after
    /// the response has begun.
    pub request_total_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            upstream_connect_ms: 2000,
            upstream_read_ms: 30000,
            upstream_idle_ms: 60000,
            client_header_ms: 10000,
            client_idle_ms: 60000,
            request_total_ms: 300000,
            shutdown_grace_ms: 10000,
        }
    }
}

/// Bounds on what a client may send and hold (beyond SPEC, which fixes only the token
/// body at 8 KiB; these are its defaults).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections on the proxy listener; beyond: 503 and close.
    pub max_connections: usize,
    /// The request line and headers together, in bytes; beyond: 431.
    pub max_header_bytes: usize,
    /// Header lines in one request (an HTTP/2 request's pseudo-header fields counted);
    /// beyond: 431.
    pub max_headers: usize,
    /// Streams one HTTP/2 connection may have open at once, announced in its SETTINGS.
    pub h2_max_concurrent_streams: u32,
    /// The token endpoint's form body; beyond: 400 `invalid_request` (SPEC §4).
    pub max_token_body_bytes: usize,
    /// A bearer token; beyond: 401 `invalid_token`, never parsed.
    pub max_bearer_bytes: usize,
    /// argon2id secret checks admitted per second, the whole process together; beyond: 429.
    pub argon2_per_second: u32,
    /// argon2id checks running at once (worker threads, one memory buffer each).
    pub argon2_concurrency: usize,
    /// argon2id checks waiting for a worker; beyond: 429 at once.
    pub argon2_queue: usize,
    /// Idle connections to the upstream kept for reuse (pingora's keep-alive pool); default
    /// `max_connections`, so every client connection can find one and a legacy backend is
    /// not made to accept a new TCP connection per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_keepalive: Option<usize>,
    /// Requests at the upstream at once, so connections to it, at most; more wait (at most
    /// `timeouts.upstream_connect_ms`, then 502). None: no bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_upstream_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 100,
            max_token_body_bytes: 8 * 1024,
            max_bearer_bytes: 8 * 1024,
            argon2_per_second: 10,
            argon2_concurrency: 1,
            argon2_queue: 8,
            upstream_keepalive: None,
            max_upstream_connections: None,
        }
    }
}

/// `authz:` (SPEC §14): where the check endpoints listen and who may ask them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    /// The HTTP/1.1 check endpoints (`/authz/forward-auth`, `/authz/auth-request`,
    /// `/authz/ext-authz/...`).
    pub listen: String,
    /// Envoy's gRPC `ext_authz` API (`envoy.service.auth.v3.Authorization/Check`) over h2c.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<String>,
    /// CIDRs or addresses allowed to ask; default: loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_peers: Option<Vec<String>>,
    /// HTTPS on `listen` and TLS (ALPN `h2`) on `grpc_listen`, as the proxy's `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// A listener's certificate chain and private key (PEM), reloaded when either changes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// How an `https://` upstream's certificate is checked. It always is, unless
/// `insecure_skip_verify` says otherwise (and `check` warns).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM CA certificates to trust instead of the system's roots (a private CA, or a
    /// legacy service's self-signed certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The name to send (SNI) and verify; default: the upstream URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// What happens to a path no privilege covers. ORDS leaves such paths public.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    #[default]
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Algorithm {
    HS256,
    RS256,
    ES256,
    EdDSA,
}

impl Algorithm {
    pub fn is_symmetric(self) -> bool {
        self == Algorithm::HS256
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "HS256" => Ok(Algorithm::HS256),
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            _ => Err(format!(
                "unknown algorithm `{s}`: use HS256, RS256, ES256 or EdDSA"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default = "default_lifetime")]
    pub lifetime_seconds: u64,
    pub algorithm: Algorithm,
    pub signing_key_file: PathBuf,
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification_keys: Vec<VerificationKeyConfig>,
}

fn default_issuer() -> String {
    "ords-guard".into()
}
fn default_lifetime() -> u64 {
    3600
}

/// One `rate_limits[]` entry (SPEC §13).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub name: String,
    #[serde(default)]
    pub by: LimitBy,
    /// Only requests these privileges decide; none: every privilege.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<String>>,
    pub rate: u64,
    pub per: LimitPer,
    /// Default `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    #[serde(default)]
    pub store: LimitStore,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// The token's client id.
    #[default]
    Client,
    /// The client address (behind `trusted_proxies`, the one they forwarded).
    Address,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitPer {
    Second,
    Minute,
    Hour,
}

impl LimitPer {
    pub fn seconds(self) -> u64 {
        match self {
            LimitPer::Second => 1,
            LimitPer::Minute => 60,
            LimitPer::Hour => 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitStore {
    #[default]
    Local,
    Redis,
}

/// `revocation` (SPEC §16): `local` (this process) or `redis` (the Redis of
/// `rate_limit_store`, shared by every replica).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    #[serde(default)]
    pub store: LimitStore,
}

/// `tracing` (SPEC §15). Keys left out are filled from the OTEL_* variables.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP base URL; spans go to `{otlp_endpoint}/v1/traces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// 0.0-1.0, for requests arriving without a valid `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    /// The resource's `service.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// `Name: value` lines sent with every export; relative to this file, re-read at reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_file: Option<PathBuf>,
}

/// `rate_limit_store` (SPEC §13).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitStoreConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    #[serde(default = "default_store_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub on_error: OnStoreError,
}

fn default_store_timeout() -> u64 {
    20
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    #[default]
    Allow,
    Deny,
}

impl OnStoreError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreError::Allow => "allow",
            OnStoreError::Deny => "deny",
        }
    }
}

/// A remote API that legacy callers reach through an egress listener (SPEC §10).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    pub name: String,
    pub listen: String,
    /// A `listen` outside loopback acts as the client for anyone who reaches it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_remote: bool,
    pub upstream: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub upstream_protocol: UpstreamProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<UpstreamTlsConfig>,
    pub token_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_tls: Option<UpstreamTlsConfig>,
    pub client_id: String,
    pub client_secret_file: PathBuf,
    #[serde(default)]
    pub auth_method: EgressAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub token_params: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_refresh_before")]
    pub refresh_before_seconds: u64,
    #[serde(default)]
    pub retry_on_401: RetryOn401Config,
}

fn default_refresh_before() -> u64 {
    60
}

/// `auth_method`: how the client authenticates at `token_url`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressAuth {
    /// client_secret_basic (RFC 6749 §2.3.1).
    #[default]
    Basic,
    /// client_secret_post.
    Post,
}

/// `retry_on_401`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryOn401Config {
    #[default]
    Idempotent,
    Never,
}

/// An identity provider whose access tokens are accepted (SPEC §9, ORDS JWT profiles).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub name: String,
    pub issuer: String,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub audience: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// JWS `alg` names; checked at compile, so `none` and HS* get a message of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<String>>,
    #[serde(default = "default_skew")]
    pub allowed_skew_seconds: u64,
    #[serde(default)]
    pub max_age_seconds: u64,
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Opaque tokens checked at the provider's RFC 7662 endpoint instead of keys (SPEC §16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<IntrospectionConfig>,
}

/// `issuers[].introspection` (SPEC §16): where and as whom the provider is asked about a
/// token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    pub url: String,
    pub client_id: String,
    pub client_secret_file: PathBuf,
    #[serde(default)]
    pub auth_method: EgressAuth,
    #[serde(default = "default_introspection_cache")]
    pub cache_seconds: u64,
}

fn default_introspection_cache() -> u64 {
    60
}

fn default_skew() -> u64 {
    30
}
fn default_refresh() -> u64 {
    600
}

/// A string or a list of strings (`audience: api` and `audience: [api, other]`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationKeyConfig {
    pub key_id: String,
    pub algorithm: Algorithm,
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegeConfig {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// `report`: what this privilege would refuse is forwarded and counted (SPEC §11).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: Mode,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Whether a privilege refuses what it does not open, or only reports it (SPEC §11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Report,
}

/// `upstream_protocol` (SPEC §17): HTTP/1.1, HTTP/2 over TLS (ALPN `h2`), or HTTP/2 with
/// prior knowledge on a plain connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    H2,
    H2c,
}

impl UpstreamProtocol {
    /// Whether it fits the upstream's scheme; the error says what would.
    pub fn check(self, tls: bool) -> Result<(), &'static str> {
        match (self, tls) {
            (UpstreamProtocol::H2, false) => Err("`h2` is HTTP/2 over TLS and the upstream is http://: use an https:// upstream, or `h2c` for HTTP/2 without TLS"),
            (UpstreamProtocol::H2c, true) => Err("`h2c` is HTTP/2 without TLS and the upstream is https://: use `h2` for HTTP/2 over TLS, or an http:// upstream"),
            _ => Ok(()),
        }
    }
}

/// What a `;` in a path segment means (SPEC §11): a 400, or matrix parameters the
/// decision ignores, as servlet containers read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathParameters {
    #[default]
    Reject,
    Strip,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub name: String,
    pub client_id: String,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default = "default_grant_type")]
    pub grant_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_email: Option<String>,
    #[serde(default)]
    pub privileges: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// May ask `POST {base_path}/oauth/introspect` about ords-guard's tokens (SPEC §16).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub introspect: bool,
    /// RFC 3339: this client's tokens issued earlier are refused (SPEC §16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
}

fn default_grant_type() -> String {
    "client_credentials".into()
}

/// Where a config came from: the file name and its text, whose key positions are indexed
/// only when a diagnostic needs them (a large registry loads without the index).
#[derive(Debug)]
pub struct Source {
    pub file: PathBuf,
    text: String,
    locations: std::sync::OnceLock<Locations>,
}

impl Source {
    /// Directory against which relative key file paths are resolved.
    pub fn dir(&self) -> &Path {
        self.file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }

    pub fn new(file: &Path, text: &str) -> Source {
        Source {
            file: file.to_path_buf(),
            text: text.to_string(),
            locations: std::sync::OnceLock::new(),
        }
    }

    pub fn locations(&self) -> &Locations {
        self.locations.get_or_init(|| Locations::index(&self.text))
    }

    /// Render a diagnostic as `file:line:column: key `path`: message`.
    pub fn render(&self, d: &Diagnostic) -> String {
        self.render_at(self.locations().find(&d.path), d)
    }

    /// Render many diagnostics, indexing only the keys they name.
    pub fn render_all(&self, ds: &[Diagnostic]) -> Vec<String> {
        if ds.is_empty() {
            return Vec::new();
        }
        let mut wanted = std::collections::HashSet::new();
        let mut top = std::collections::HashMap::new();
        for d in ds.iter().filter(|d| !d.path.contains(['.', '['])) {
            // A top-level key is found by a line scan; absent, it has no position (a
            // default was used) and the whole file need not be parsed to learn that.
            let at = self.text.lines().position(|l| {
                l.strip_prefix(d.path.as_str())
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            });
            top.insert(
                d.path.as_str(),
                at.map(|i| Position {
                    line: i + 1,
                    column: 1,
                }),
            );
        }
        for d in ds.iter().filter(|d| !top.contains_key(d.path.as_str())) {
            // The path and its ancestors, for `find`'s fallback.
            let mut p = d.path.as_str();
            wanted.insert(p.to_string());
            while let Some(cut) = p.rfind(['.', '[']) {
                p = &p[..cut];
                wanted.insert(p.to_string());
            }
        }
        let locations = if wanted.is_empty() {
            Locations::default()
        } else {
            Locations::index_only(&self.text, Some(&wanted))
        };
        ds.iter()
            .map(|d| match top.get(d.path.as_str()) {
                Some(pos) => self.render_at(*pos, d),
                None => self.render_at(locations.find(&d.path), d),
            })
            .collect()
    }

    fn render_at(&self, pos: Option<Position>, d: &Diagnostic) -> String {
        match pos {
            Some(p) => format!(
                "{}:{}:{}: key `{}`: {}",
                self.file.display(),
                p.line,
                p.column,
                d.path,
                d.message
            ),
            None => format!("{}: key `{}`: {}", self.file.display(), d.path, d.message),
        }
    }
}

/// A problem found in the config, by key path (`privileges[0].patterns[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A config that could not be loaded; `Display` gives one line per problem.
#[derive(Debug)]
pub struct ConfigError {
    pub lines: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Parse the YAML text of `file`. Errors name the file, line, column and key.
pub fn parse(text: &str, file: &Path) -> Result<(Config, Source), ConfigError> {
    parse_as(text, file)
}

/// Parse a `clients_file`: a YAML list of client entries.
pub fn read_clients(file: &Path) -> Result<(Vec<ClientConfig>, Source), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        lines: vec![format!(
            "{}: cannot read the clients file: {e}",
            file.display()
        )],
    })?;
    parse_as(&text, file)
}

fn parse_as<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<(T, Source), ConfigError> {
    match serde_yaml::from_str::<T>(text) {
        Ok(c) => Ok((c, Source::new(file, text))),
        Err(e) => {
            let msg = e.to_string();
            // serde_yaml appends " at line L column C"; we put the position first.
            let mut msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            // serde quotes the offending value; under a `secrets` key that may be a
            // plaintext secret pasted by mistake, which must not reach a log.
            let at_line = e
                .location()
                .and_then(|l| text.lines().nth(l.line().saturating_sub(1)));
            let key_path = msg.split(": ").next().unwrap_or("");
            if key_path.contains("secret") || at_line.is_some_and(|l| l.contains("secret")) {
                msg = redact_quoted(&msg);
            }
            let line = match e.location() {
                Some(l) => format!("{}:{}:{}: {}", file.display(), l.line(), l.column(), msg),
                None => format!("{}: {}", file.display(), msg),
            };
            Err(ConfigError { lines: vec![line] })
        }
    }
}

/// Replace every `"..."` in a message by `"<redacted>"`.
fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for (i, part) in msg.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(if i % 2 == 1 { "<redacted>" } else { part });
    }
    out
}

/// Read and parse `file`.
pub fn read(file: &Path) -> Result<(Config, Source), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        lines: vec![format!(
            "{}: cannot read the config file: {e}",
            file.display()
        )],
    })?;
    parse(&text, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:9090\nupstream: http://127.0.0.1:3000\ntoken:\n  algorithm: HS256\n  signing_key_file: k\n  key_id: a\n";

    #[test]
    fn defaults_follow_the_spec() {
        let (c, _) = parse(MINIMAL, Path::new("c.yaml")).unwrap();
        assert_eq!(c.base_path, "/");
        assert_eq!(c.unmatched, Unmatched::Allow);
        let t = c.token.unwrap();
        assert_eq!(t.lifetime_seconds, 3600);
        assert_eq!(t.issuer, "ords-guard");
        assert_eq!(c.timeouts.upstream_read_ms, 30000);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = format!("{MINIMAL}privileges:\n  - name: p\n    rolez: [a]\n");
        let err = parse(&text, Path::new("conf/g.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("conf/g.yaml:10:"), "{err}");
        assert!(err.contains("rolez"), "{err}");
    }

    #[test]
    fn a_misplaced_secret_is_not_echoed() {
        for text in [
            format!("{MINIMAL}clients:\n  - name: a\n    client_id: a\n    secrets: hunter2-plain\n"),
            format!("{MINIMAL}clients:\n  - name: a\n    client_id: a\n    secrets: [[hunter2-plain]]\n"),
        ] {
            let err = parse(&text, Path::new("g.yaml")).unwrap_err().to_string();
            assert!(err.starts_with("g.yaml:11:") && !err.contains("hunter2"), "{err}");
        }
        // Elsewhere the value stays, to help.
        let err = parse(&MINIMAL.replace("HS256", "HS257"), Path::new("g.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HS257"), "{err}");
    }

    #[test]
    fn bad_algorithm_is_reported() {
        let text = MINIMAL.replace("HS256", "none");
        let err = parse(&text, Path::new("g.yaml")).unwrap_err().to_string();
        assert!(err.starts_with("g.yaml:5:"), "{err}");
        assert!(err.contains("none"), "{err}");
    }

    #[test]
    fn render_points_at_the_key() {
        let text = format!("{MINIMAL}privileges:\n  - name: p\n    patterns: [\"x\"]\n");
        let (_, src) = parse(&text, Path::new("g.yaml")).unwrap();
        let s = src.render(&Diagnostic::new("privileges[0].patterns[0]", "malformed"));
        assert_eq!(
            s,
            "g.yaml:10:16: key `privileges[0].patterns[0]`: malformed"
        );
    }
}
