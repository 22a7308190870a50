//! Listener TLS: certificates served through a resolver that reads the current registry,
//! so a reload replaces them without a restart (they are read by `certs`).

use crate::serve::state::Guard;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::ALPN;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

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
