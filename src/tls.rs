//! TLS material: listener certificates (served through a resolver that reads the current
//! registry, so a reload replaces them without a restart) and the CA certificates an
//! `https://` upstream is verified against.

use crate::state::Guard;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::tls::CaType;
use pingora::protocols::ALPN;
use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, what)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no `BEGIN CERTIFICATE` block",
            path.display()
        ));
    }
    Ok(certs)
}

/// A listener's certificate chain (leaf first) and its private key, checked to belong
/// together.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = certificates(cert_file, "certificate file")?;
    let pem = read(key_file, "key file")?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("key file {} is not PEM: {e}", key_file.display()))?
        .ok_or_else(|| {
            format!(
                "key file {} holds no private key (PKCS#8, PKCS#1 or SEC1 PEM)",
                key_file.display()
            )
        })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| {
            format!(
                "certificate {} and key {} cannot serve TLS: {e}",
                cert_file.display(),
                key_file.display()
            )
        })
}

/// The CA certificates in a PEM file, each checked to parse (pingora panics on a bad one).
pub fn load_ca(path: &Path) -> Result<Arc<CaType>, String> {
    let certs = certificates(path, "CA file")?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        roots.add(c.clone()).map_err(|e| {
            format!(
                "CA file {}: certificate #{} is not usable: {e}",
                path.display(),
                i + 1
            )
        })?;
        x509_parser::parse_x509_certificate(c.as_ref()).map_err(|e| {
            format!(
                "CA file {}: certificate #{} does not parse: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(certs
        .into_iter()
        .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
        .collect::<Vec<_>>()
        .into())
}

/// Which listener a resolver serves.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Proxy,
    Admin,
}

/// Hands out the certificate of the registry generation current at each handshake.
pub struct Resolver {
    guard: Arc<Guard>,
    listener: Listener,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resolver({:?})", self.listener)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let reg = self.guard.registry();
        match self.listener {
            Listener::Proxy => reg.tls.proxy.clone(),
            Listener::Admin => reg.tls.admin.clone(),
        }
    }
}

/// pingora listener settings whose certificate follows reloads. HTTP/1.1 only: the
/// connection guard (`conn`) reads request heads itself.
pub fn listener_settings(guard: Arc<Guard>, listener: Listener) -> TlsSettings {
    // Paths are ignored once a resolver is set.
    let mut settings = TlsSettings::intermediate("", "").expect("no files are read here");
    settings.set_cert_resolver(Arc::new(Resolver { guard, listener }));
    settings.set_alpn(ALPN::H1);
    settings
}
