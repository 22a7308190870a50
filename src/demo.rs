//! `ords-guard demo`: the embedded default. The example registry, a fresh ES256 key and a
//! freshly generated client, the built-in echo backend, and the curl lines for steps 4 and 5.

use crate::config::{self, Algorithm};
use std::path::PathBuf;

pub const EXAMPLE: &str = include_str!("../config/ords-guard.example.yaml");

pub fn run(
    listen: &str,
    admin_listen: &str,
    backend_listen: &str,
    dir: Option<PathBuf>,
) -> Result<(), String> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("ords-guard-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (mut cfg, _) = config::parse(EXAMPLE, std::path::Path::new("embedded example"))
        .map_err(|e| e.to_string())?;
    crate::oauth::keys::write_generated(
        &dir.join("keys"),
        &crate::oauth::keys::generate(Algorithm::ES256),
    )
    .map_err(|e| format!("cannot write the demo key: {e}"))?;
    let (client, secret) =
        crate::cli::new_client("Example Client", vec!["example_role".into()], vec![]);
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

    let base = format!("http://{listen}{}", cfg.base_path.trim_end_matches('/'));
    let (id, url) = (&client.client_id, format!("{base}/example/employees/"));
    println!(
        r#"
ords-guard demo
  proxy    http://{listen}  ->  demo backend http://{backend_listen}
  admin    http://{admin_listen}/metrics
  config   {config}   (edit it, then: kill -HUP {pid})

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
        pid = std::process::id(),
        base_path = cfg.base_path.trim_end_matches('/'),
    );
    crate::serve::server::run(&path, Some(backend_listen))
}
