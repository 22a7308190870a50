//! `ords-guard demo`: the embedded default. The example registry, a fresh ES256 key and a
//! freshly generated client, the built-in echo backend, and the curl lines for steps 4 and 5.

use crate::config::{self, Algorithm};
use crate::serve::server::StopSignals;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::path::PathBuf;

pub const EXAMPLE: &str = include_str!("../config/ords-guard.example.yaml");

pub fn run(
    listen: &str,
    admin_listen: &str,
    backend_listen: &str,
    dir: Option<PathBuf>,
    stop: StopSignals,
) -> Result<(), String> {
    let dir = working_dir(dir)?;
    let (mut cfg, _) = config::parse(EXAMPLE, std::path::Path::new("embedded example"))
        .map_err(|e| e.to_string())?;
    crate::tokens::keys::write_generated(
        &dir.join("keys"),
        &crate::tokens::keys::generate(Algorithm::ES256),
    )
    .map_err(|e| format!("cannot write the demo key: {e}"))?;
    let (client, secret) =
        crate::clients::new_client("Example Client", vec!["example_role".into()], vec![]);
    cfg.listen = Some(listen.into());
    cfg.admin_listen = admin_listen.into();
    cfg.upstream = Some(format!("http://{backend_listen}"));
    if let Some(t) = cfg.token.as_mut() {
        t.signing_key_file = "keys/signing.pem".into();
        t.key_id = "demo".into();
    }
    cfg.clients = vec![client.clone()];
    let path = dir.join("ords-guard.yaml");
    std::fs::write(&path, serde_yaml::to_string(&cfg).expect("yaml"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;

    let base = format!(
        "http://{}{}",
        reachable(listen),
        cfg.base_path.trim_end_matches('/')
    );
    let (id, url) = (&client.client_id, format!("{base}/example/employees/"));
    println!(
        r#"
ords-guard demo
  proxy    http://{listen}  ->  demo backend http://{backend_listen}
  admin    http://{admin_listen}/metrics
  config   {config}   ({reload})

The five ORDS steps, done for you from config/ords-guard.example.yaml:
  1-2. role `example_role`, privilege `example_priv` mapped to `{base_path}/example/*`
  3.   client "Example Client": client_id {id}  client_secret {secret}

Try steps 4 and 5:
  # 5 without a token: 401
  curl -i {url}
  # 4: swap the client id and secret for a bearer token
  curl -s -u '{id}:{secret}' -d grant_type=client_credentials {base}/oauth/token
  # 5 with the token: 200, and the backend sees X-ORDS-Client-Id / -Roles / -Privilege
  TOKEN=$(curl -s -u '{id}:{secret}' -d grant_type=client_credentials {base}/oauth/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -i -H "Authorization: Bearer $TOKEN" {url}

Ctrl-C stops the demo.
"#,
        config = path.display(),
        // As PID 1 the demo is in a container with no shell: edit the file through the
        // volume `--dir` is on, and signal from the host.
        reload = match std::process::id() {
            1 => "in a container: give --dir a mounted volume to edit it, then podman kill --signal HUP CONTAINER".to_string(),
            pid => format!("edit it, then: kill -HUP {pid}"),
        },
        base_path = cfg.base_path.trim_end_matches('/'),
    );
    crate::serve::server::run(&path, Some(backend_listen), stop)
}

/// Where the demo writes its config and key: `--dir`, else a new directory in the temp dir,
/// else in `/dev/shm`. On a read-only root filesystem (a container run `--read-only`) the
/// temp dir is writable only where a tmpfs is mounted on it (podman does so, docker only
/// with `--tmpfs /tmp`); `/dev/shm` is a tmpfs in every container. Both are shared with
/// other users: the directory is new (never one found there, which someone else could have
/// made to swap the config the demo reloads), with a random name and mode 0700.
fn working_dir(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(d) = given {
        std::fs::create_dir_all(&d).map_err(|e| {
            format!(
                "cannot create {}: {e}\nThe demo writes its config and key there: give --dir a writable directory.",
                d.display()
            )
        })?;
        return Ok(d);
    }
    use std::os::unix::fs::DirBuilderExt;
    let mut tried = Vec::new();
    for parent in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
        for _ in 0..8 {
            let d = parent.join(format!(
                "ords-guard-demo-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => return Ok(d),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    tried.push(format!("{}: {e}", d.display()));
                    break;
                }
            }
        }
    }
    Err(format!(
        "cannot create a directory for the demo's config and key ({}).\nGive it a writable place: --dir DIR on a mounted volume, or a tmpfs on /tmp (`docker run --read-only` needs `--tmpfs /tmp`).",
        tried.join("; ")
    ))
}

/// The address to print in the curl lines: a wildcard listen (`0.0.0.0:8080`, as in a
/// container) is reached on loopback.
fn reachable(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip: std::net::IpAddr = match a {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            };
            std::net::SocketAddr::new(ip, a.port()).to_string()
        }
        _ => listen.to_string(),
    }
}

/// `ords-guard demo-backend`: the demo's echo backend alone, a stand-in for the legacy
/// service when trying the sidecar pod (`deploy/kubernetes`, played with `podman kube
/// play`). Stops at once on SIGTERM or SIGINT; it holds no state worth draining.
pub fn backend(listen: &str, stop: StopSignals) -> Result<(), String> {
    use pingora::server::configuration::ServerConf;
    use pingora::server::{RunArgs, Server};
    use pingora::services::listening::Service;
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = Service::new("demo backend".to_string(), crate::backend::EchoBackend);
    svc.add_tcp(listen);
    server.add_service(svc);
    tracing::info!(target: "ords_guard", listen, "demo backend starting");
    server.run(RunArgs {
        shutdown_signal: Box::new(StopAtOnce(stop)),
    });
    Ok(())
}

/// The demo backend's shutdown: the first SIGTERM or SIGINT, even one from before pingora ran.
struct StopAtOnce(StopSignals);

#[async_trait::async_trait]
impl ShutdownSignalWatch for StopAtOnce {
    async fn recv(&self) -> ShutdownSignal {
        let signal = self.0.first().await;
        tracing::info!(target: "ords_guard", signal, "demo backend stopping");
        // As the proxy's drain does (see `serve::server`): the accept loops are told.
        ShutdownSignal::GracefulTerminate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_lines_name_a_reachable_address() {
        assert_eq!(reachable("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(reachable("[::]:8080"), "[::1]:8080");
        assert_eq!(reachable("127.0.0.1:18080"), "127.0.0.1:18080");
        assert_eq!(reachable("localhost:8080"), "localhost:8080");
    }

    #[test]
    fn an_unwritable_dir_says_what_to_do() {
        let ro = tempfile::tempdir().unwrap();
        let file = ro.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let e = working_dir(Some(file.join("demo"))).unwrap_err();
        assert!(e.contains("give --dir a writable directory"), "{e}");
    }
}
