//! Assembles the pingora server: the proxy service, the admin service, optionally the demo
//! backend, reload on SIGHUP, readiness, and draining on SIGTERM/SIGINT.

use crate::backend::EchoBackend;
use crate::serve::admin::Admin;
use crate::serve::conn::Guarded;
use crate::serve::proxy::Proxy;
use crate::serve::state::{self, Guard};
use crate::serve::tls;
use async_trait::async_trait;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Start everything and block until shut down. `demo_backend`: also serve the built-in
/// echo backend on that address.
pub fn run(
    config_path: &Path,
    demo_backend: Option<&str>,
    stop: StopSignals,
) -> Result<(), String> {
    let (compiled, warnings) = state::load(config_path).map_err(|e| format!("{e}\nords-guard did not start: fix the config (`ords-guard check --config {}` lists every problem)", config_path.display()))?;
    for w in warnings {
        tracing::warn!(target: "ords_guard::config", "{w}");
    }
    let listeners = compiled.listeners.clone();
    let guard = Guard::new(
        compiled.registry,
        listeners.clone(),
        config_path.to_path_buf(),
    );
    let in_flight = Arc::new(AtomicUsize::new(0));

    let conf = ServerConf {
        threads: listeners
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        // We drain in-flight requests ourselves before telling pingora to stop (see `Drain`).
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        // One current-thread runtime per worker: measured faster than work stealing for a
        // proxy whose requests are short and independent (docs/src/performance-history.md).
        work_stealing: false,
        // Idle upstream connections kept per process; pingora's default (128) made every
        // request past 128 concurrent ones open a new connection to the backend.
        upstream_keepalive_pool_size: listeners.upstream_keepalive,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // The ingress, when there is one (an egress-only config has no `listen`).
    if let Some(listen) = &listeners.listen {
        let proxy_app = pingora::proxy::http_proxy(
            &server.configuration,
            Proxy {
                guard: guard.clone(),
                in_flight: in_flight.clone(),
                upstream_slots: listeners.max_upstream_connections.map(|n| {
                    crate::serve::upstream_slots::UpstreamSlots::new(
                        n,
                        guard.metrics.upstream_waiting.clone(),
                    )
                }),
            },
        );
        let mut proxy = Service::new(
            "ords-guard proxy".to_string(),
            Guarded::new(proxy_app, guard.clone(), crate::serve::conn::PROXY_LISTENER)
                .with_http2(listeners.http2),
        );
        if listeners.tls {
            let settings =
                tls::listener_settings(guard.clone(), tls::Listener::Proxy, listeners.http2);
            proxy.add_tls_with_settings(listen, None, settings);
        } else {
            proxy.add_listener(plaintext(listen));
        }
        server.add_service(proxy);
    }

    // One listener per egress entry (SPEC §10), bound at start like the proxy's.
    for (name, addr) in &listeners.egress {
        let app = pingora::proxy::http_proxy(
            &server.configuration,
            crate::serve::egress::proxy::EgressProxy {
                guard: guard.clone(),
                name: name.clone(),
                in_flight: in_flight.clone(),
            },
        );
        let mut svc = Service::new(
            format!("ords-guard egress {name}"),
            Guarded::new(app, guard.clone(), crate::serve::conn::EGRESS_LISTENER)
                .with_http2(listeners.http2),
        );
        svc.add_listener(plaintext(&addr.to_string()));
        server.add_service(svc);
    }

    // The decision for a proxy already in the path (SPEC §14).
    if let Some(addr) = listeners.authz {
        let mut authz = Service::new(
            "ords-guard authz".to_string(),
            Guarded::new(
                crate::serve::authz::Authz {
                    guard: guard.clone(),
                },
                guard.clone(),
                crate::serve::authz::AUTHZ_LISTENER,
            ),
        );
        if addr.tls {
            let settings = tls::listener_settings(guard.clone(), tls::Listener::Authz, false);
            authz.add_tls_with_settings(&addr.http.to_string(), None, settings);
        } else {
            authz.add_listener(plaintext(&addr.http.to_string()));
        }
        server.add_service(authz);
        // Envoy's gRPC API (h2c, or h2 with `authz.tls`), served by tonic beside pingora's
        // services.
        if let Some(grpc) = addr.grpc {
            let svc = crate::serve::authz_grpc::GrpcService::bind(guard.clone(), grpc, addr.tls)?;
            server.add_service(pingora::services::background::GenBackgroundService::new(
                "ords-guard authz grpc".to_string(),
                Arc::new(svc),
            ));
        }
    }

    let mut admin = Service::new(
        "ords-guard admin".to_string(),
        Guarded::new(
            Admin {
                guard: guard.clone(),
            },
            guard.clone(),
            "admin",
        ),
    );
    if listeners.admin_tls {
        let settings = tls::listener_settings(guard.clone(), tls::Listener::Admin, false);
        admin.add_tls_with_settings(&listeners.admin_listen, None, settings);
    } else {
        admin.add_listener(plaintext(&listeners.admin_listen));
    }
    admin.threads = Some(1);
    server.add_service(admin);

    if let Some(addr) = demo_backend {
        let mut backend = Service::new("demo backend".to_string(), EchoBackend);
        backend.add_tcp(addr);
        backend.threads = Some(1);
        server.add_service(backend);
    }

    spawn_reload_on_sighup(guard.clone())?;
    crate::serve::reload::spawn(guard.clone())?;
    spawn_readiness(&server, guard.clone());

    tracing::info!(target: "ords_guard", listen = listeners.listen.as_deref().unwrap_or("-"), egress = listeners.egress.len(), authz = listeners.authz.map(|a| a.http.to_string()).as_deref().unwrap_or("-"), authz_grpc = listeners.authz.and_then(|a| a.grpc).map(|a| a.to_string()).as_deref().unwrap_or("-"), tls = listeners.tls, admin = %listeners.admin_listen, admin_tls = listeners.admin_tls, config = %config_path.display(), "ords-guard starting");
    server.run(RunArgs {
        shutdown_signal: Box::new(Drain {
            guard,
            in_flight,
            stop,
        }),
    });
    tracing::info!(target: "ords_guard", "ords-guard stopped");
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment a serving command starts. As PID 1 in a
/// container a signal with no handler is ignored, and pingora's runtimes (and the drain's
/// tokio handlers) exist only once the server runs: a `podman stop` while the config loads
/// or the demo makes its key would wait for its SIGKILL. The flag remembers such a signal
/// until the drain looks.
pub struct StopSignals(Arc<AtomicUsize>);

impl StopSignals {
    /// Catch them now; call this first thing in `run`, `demo` and `demo-backend`.
    pub fn catch() -> Result<StopSignals, String> {
        let flag = Arc::new(AtomicUsize::new(0));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register_usize(sig, flag.clone(), sig as usize)
                .map_err(|e| format!("cannot watch SIGTERM/SIGINT: {e}"))?;
        }
        Ok(StopSignals(flag))
    }

    /// The stop signal that came before anyone waited, if one did.
    fn came(&self) -> Option<&'static str> {
        match self.0.load(Ordering::SeqCst) as i32 {
            signal_hook::consts::SIGTERM => Some("SIGTERM"),
            signal_hook::consts::SIGINT => Some("SIGINT"),
            _ => None,
        }
    }

    /// The first stop signal: one that already came, or the next.
    pub async fn first(&self) -> &'static str {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        // Looked at after the handlers above exist, so no signal falls between the two.
        match self.came() {
            Some(name) => name,
            None => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
        }
    }
}

/// SIGHUP: reload. Registered before the server starts, so an early SIGHUP cannot kill us.
fn spawn_reload_on_sighup(guard: Arc<Guard>) -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!(target: "ords_guard::reload", "SIGHUP: reloading the config");
                let _ = guard.reload();
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Ready once pingora runs its services (listeners bound); the drain turns it off again.
fn spawn_readiness(server: &Server, guard: Arc<Guard>) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::Running) => guard.set_ready(true),
            Ok(ExecutionPhase::GracefulTerminate | ExecutionPhase::ShutdownStarted) => {
                guard.set_ready(false)
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    });
}

/// After the grace period, how long pingora may take to stop its services before the
/// watchdog ends the process anyway.
const EXIT_BOUND: Duration = Duration::from_secs(5);

/// A shutdown must end even if a service runtime never does (issue #14: one proxy runtime
/// kept its accept loop spinning after its I/O driver was gone, for good; `Drain` says why
/// and no longer lets it happen; this bounds whatever else might). From the signal
/// on, a plain thread — no runtime involved — exits the process `within` later: with 0,
/// since the drain itself was done.
fn arm_exit_watchdog(signal: &'static str, within: Duration) {
    let armed = std::thread::Builder::new()
        .name("exit-watchdog".into())
        .spawn(move || {
            std::thread::sleep(within);
            tracing::error!(target: "ords_guard", signal, within_ms = within.as_millis() as u64, "the services did not stop in time after the drain: exiting anyway");
            crate::logs::finish();
            std::process::exit(0);
        });
    if let Err(e) = armed {
        tracing::error!(target: "ords_guard", "cannot start the exit watchdog: {e}");
    }
}

/// SIGTERM or SIGINT: readiness 503 at once, wait for requests in flight (up to
/// `timeouts.shutdown_grace_ms`), then stop.
struct Drain {
    guard: Arc<Guard>,
    in_flight: Arc<AtomicUsize>,
    stop: StopSignals,
}

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        let name = self.stop.first().await;
        self.guard.start_draining();
        let grace = self.guard.registry().shutdown_grace;
        arm_exit_watchdog(name, grace + EXIT_BOUND);
        tracing::info!(target: "ords_guard", signal = name, in_flight = self.in_flight.load(Ordering::Acquire), grace_ms = grace.as_millis() as u64, "draining");
        let deadline = Instant::now() + grace;
        while self.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cut = self.in_flight.load(Ordering::Acquire);
        if cut > 0 {
            tracing::warn!(target: "ords_guard", cut, "grace period over: cutting requests still in flight");
        }
        // pingora's own line for this says "SIGTERM received" whatever the signal (`logs`).
        tracing::info!(target: "ords_guard", signal = name, "drained: stopping the listeners and exiting");
        // Not `FastShutdown`: that tears the runtimes down without telling the accept loops
        // to stop. A loop running on one runtime whose listener is registered with
        // another's I/O driver then gets an error from every accept() once that driver is
        // gone and retries at once without yielding, so its own runtime never stops (the
        // hang of issue #14). `GracefulTerminate` broadcasts the shutdown first, so every
        // such retry also finds the shutdown branch ready and the loop ends; with our grace
        // period of 0 pingora does not wait before stopping the runtimes.
        ShutdownSignal::GracefulTerminate
    }
}

/// A plaintext TCP listener without pingora's 64 KiB read buffer per connection: it is
/// there for TLS's 16 KiB record reads, while the HTTP sessions read into buffers of their
/// own, so on plaintext it only added a copy per read and 64 KiB per open connection
/// (issue #37). The small write buffer, which coalesces a head and its body, stays.
fn plaintext(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(0))
}
