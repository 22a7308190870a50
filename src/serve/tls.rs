//! Listener TLS: certificates served through a resolver that reads the current registry,
//! so a reload replaces them without a restart (they are read by `certs`).

use crate::serve::state::Guard;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::ALPN;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::transport::server::Connected;

/// Which listener a resolver serves.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Proxy,
    Admin,
    /// Both check listeners (`authz.tls`).
    Authz,
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
            Listener::Authz => reg.tls.authz.clone(),
        }
    }
}

/// pingora listener settings whose certificate follows reloads. ALPN offers `h2` before
/// `http/1.1` when `h2` (the listener's guard serves HTTP/2, SPEC §17), else HTTP/1.1 only.
pub fn listener_settings(guard: Arc<Guard>, listener: Listener, h2: bool) -> TlsSettings {
    // Paths are ignored once a resolver is set.
    let mut settings = TlsSettings::intermediate("", "").expect("no files are read here");
    settings.set_cert_resolver(Arc::new(Resolver { guard, listener }));
    settings.set_alpn(if h2 { ALPN::H2H1 } else { ALPN::H1 });
    settings
}

/// rustls settings for a listener served outside pingora (the gRPC check listener: tonic),
/// with the same reloading certificate. `alpn`: what it speaks (`h2` for gRPC).
pub fn server_config(guard: Arc<Guard>, listener: Listener, alpn: &[u8]) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver { guard, listener }));
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// Connections handshaken at most this many at once on a listener served outside pingora;
/// the rest wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 64;

/// TLS connections accepted on `listener`, for tonic's `serve_with_incoming`. Each
/// handshake runs in a task of its own, bounded by `handshake_timeout`, so a client that
/// stalls its handshake holds neither the accept loop nor anyone else's connection.
/// `admit` judges each peer before its handshake: one it refuses is closed at once and
/// never holds a handshake's place.
pub fn incoming(
    listener: tokio::net::TcpListener,
    config: Arc<ServerConfig>,
    handshake_timeout: std::time::Duration,
    admit: impl Fn(std::net::IpAddr) -> bool + Send + 'static,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConnection>> {
    let (tx, rx) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let tcp = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) if admit(peer.ip().to_canonical()) => tcp,
                    Ok(_) => continue,
                    // Out of descriptors or the like: the next accept fails the same way
                    // at once, so wait a little rather than spin.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                // tonic stopped reading: shut down.
                _ = tx.closed() => return,
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                // A failed or slow handshake is the client's problem, not the listener's.
                if let Ok(Ok(tls)) =
                    tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
                {
                    let _ = tx.send(Ok(TlsConnection(tls))).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A TLS connection accepted by [`incoming`]; tonic reads its peer as it reads a TCP
/// stream's (`remote_addr`, which the check door judges `trusted_peers` by).
pub struct TlsConnection(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl tokio::io::AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
