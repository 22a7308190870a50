//! Certificates and keys read from files: listener certificates, the CA certificates an
//! `https://` upstream or an identity provider is verified against. Below the registry
//! (which calls these while compiling), above nothing of ours.

use pingora::protocols::tls::CaType;
use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls::pki_types::CertificateDer;
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

/// The CA certificates in a PEM file, each checked to be usable as a root and to parse
/// (pingora panics on a bad one).
pub fn load_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
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
    Ok(certs)
}

/// [`load_ca_certs`] in the form pingora's upstream TLS takes.
pub fn load_ca(path: &Path) -> Result<Arc<CaType>, String> {
    Ok(load_ca_certs(path)?
        .into_iter()
        .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
        .collect::<Vec<_>>()
        .into())
}
