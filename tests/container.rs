//! The shipped image and the sidecar pod (issue #31), with the real tools: the image built
//! by `scripts/image.sh` (this test build's binary on the local distroless-style base), run by
//! podman as a user would run it, and the Deployment of `deploy/kubernetes/overlays/example`
//! played with `podman kube play`. Only loopback ports are published.

mod common;

use common::{eventually, free_port, http_client};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `podman` with this project's settings for these machines (`scripts/setup.sh` writes
/// them: runc, ulimits within the hard limit), unless the caller chose others.
fn podman(args: &[&str]) -> Output {
    let mut cmd = Command::new("podman");
    cmd.args(args);
    let conf = Path::new(ROOT).join(".tools/containers.conf");
    if std::env::var_os("CONTAINERS_CONF").is_none() && conf.exists() {
        cmd.env("CONTAINERS_CONF", conf);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e} (run ./scripts/setup.sh)"))
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What a container wrote (podman logs keeps stdout and stderr apart: both).
fn logs(name: &str) -> String {
    let out = podman(&["logs", name]);
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// The image, built once per test binary by `scripts/image.sh` as a user builds it, but
/// from the binary these tests were built with (`BINARY`): a release build of every crate
/// would add ~8 minutes to CI on 2 cores, and packaging is the same for either profile.
/// A failed build fails every test that needs it, without building again.
fn image() -> &'static str {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let out = Command::new(Path::new(ROOT).join("scripts/image.sh"))
            .env("BINARY", env!("CARGO_BIN_EXE_ords-guard"))
            .current_dir(ROOT)
            .output()
            .map_err(|e| format!("scripts/image.sh: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("scripts/image.sh failed:\n{stderr}"));
        }
        eprintln!("{}", stderr.lines().last().unwrap_or_default());
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .last()
            .map(str::to_string)
            .ok_or_else(|| "scripts/image.sh printed no reference".to_string())
    });
    match built {
        Ok(reference) => reference,
        Err(e) => panic!("{e}"),
    }
}

/// A name no earlier run used, even one killed before it cleaned up (whose pid may come
/// round again): the pid and the time.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Removes a container (or a played pod and its volumes) however the test ends.
struct Cleanup(Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.0 {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = podman(&args);
        }
    }
}

async fn wait_ready(admin_port: u16, what: &str) {
    let http = http_client();
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    eventually(what, || {
        let (http, url) = (http.clone(), url.clone());
        async move { matches!(http.get(&url).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
}

/// Until the container has stopped (bounded: `podman wait` is not).
async fn exited(name: &str) {
    eventually(&format!("{name} to exit"), || {
        let running = podman_ok(&["inspect", "--format", "{{.State.Running}}", name]);
        async move { running == "false" }
    })
    .await;
}

async fn wait_log(name: &str, needle: &str) -> String {
    let mut seen = String::new();
    eventually(&format!("`{needle}` in the logs of {name}"), || {
        seen = logs(name);
        let found = seen.contains(needle);
        async move { found }
    })
    .await;
    seen
}

/// The README's curl lines for steps 5, 4 and 5 again, run as they stand with the port
/// the container was published on, and with `CLIENT_ID`, `CLIENT_SECRET` and `TOKEN` set.
fn readme_curl_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let block = readme
        .split("```sh")
        .find(|b| b.contains("# 5 without a token: 401"))
        .expect("the README's block of curl lines");
    let block = block.split("```").next().unwrap();
    let lines: Vec<String> = block
        .lines()
        .filter(|l| l.starts_with("curl "))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 3, "the README's curl lines: {lines:?}");
    lines
}

fn curl_line(line: &str, port: u16, env: &[(&str, &str)]) -> String {
    let line = line.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let out = Command::new("bash")
        .args(["-c", &line])
        .envs(env.iter().copied())
        .output()
        .expect("curl (run ./scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The seed's flow with its own curl lines: 401 without a token, a token for the client's
/// id and secret, 200 with it and the identity headers at the backend.
fn five_steps_with_curl(port: u16, id: &str, secret: &str) -> String {
    let lines = readme_curl_lines();
    let creds = [("CLIENT_ID", id), ("CLIENT_SECRET", secret)];
    let refused = curl_line(&lines[0], port, &creds);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused.contains("WWW-Authenticate: Bearer realm=\"ords-guard\""),
        "{refused}"
    );
    let answer: serde_json::Value =
        serde_json::from_str(&curl_line(&lines[1], port, &creds)).unwrap();
    assert_eq!(answer["token_type"], "bearer", "{answer}");
    assert_eq!(answer["expires_in"], 3600, "{answer}");
    let token = answer["access_token"].as_str().unwrap().to_string();
    let served = curl_line(&lines[2], port, &[("TOKEN", &token)]);
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    for header in [
        format!("\"x-ords-client-id\": \"{id}\""),
        "\"x-ords-client-name\": \"Example Client\"".into(),
        "\"x-ords-privilege\": \"example_priv\"".into(),
        "\"x-ords-roles\": \"example_role\"".into(),
    ] {
        assert!(served.contains(&header), "{header} not in:\n{served}");
    }
    assert!(!served.contains("\"authorization\""), "{served}");
    token
}

/// `demo`'s client id and secret, from the lines it prints.
fn demo_client(printed: &str) -> (String, String) {
    let line = printed
        .lines()
        .find(|l| l.contains("client_secret "))
        .expect("demo prints the client");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| words[words.iter().position(|x| *x == w).unwrap() + 1].to_string();
    (after("client_id"), after("client_secret"))
}

/// One entry of `tar -tv` of the image's filesystem.
struct ImageFile {
    mode: String,
    owner: String,
    size: u64,
    path: String,
}

/// The image's files, as `podman export` of a container made from it (never started).
fn image_files(image: &str) -> Vec<ImageFile> {
    let name = unique("ords-guard-test-files");
    let _cleanup = Cleanup(vec![vec!["rm".into(), "-f".into(), name.clone()]]);
    podman_ok(&["create", "--name", &name, image]);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("image.tar");
    podman_ok(&["export", "-o", tar.to_str().unwrap(), &name]);
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            // drwxrwxrwt 0/0 0 2026-12-07 05:10 tmp/   (a link: "name -> target")
            let fields: Vec<&str> = l.split_whitespace().collect();
            ImageFile {
                mode: fields[0].to_string(),
                owner: fields[1].to_string(),
                size: fields[2].parse().unwrap_or(0),
                path: fields[5].trim_start_matches("./").to_string(),
            }
        })
        .collect()
}

/// One file of the image, read with `podman cp` (no shell in the image to `cat` it).
fn image_file(image: &str, path: &str) -> String {
    let name = unique("ords-guard-test-file");
    let _cleanup = Cleanup(vec![vec!["rm".into(), "-f".into(), name.clone()]]);
    podman_ok(&["create", "--name", &name, image]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file");
    podman_ok(&["cp", &format!("{name}:{path}"), dest.to_str().unwrap()]);
    std::fs::read_to_string(dest).unwrap()
}

#[test]
fn the_image_is_small_labelled_non_root_and_shell_free() {
    let image = image();
    let inspect = |format: &str| podman_ok(&["image", "inspect", "--format", format, image]);
    let version = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    // `ords-guard 0.1.0 (rev 1a2b3c4d5e6f)`
    assert!(
        version.starts_with(&format!("ords-guard {} (rev ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let labels: serde_json::Value =
        serde_json::from_str(&inspect("{{json .Config.Labels}}")).unwrap();
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
    assert!(
        !revision.is_empty() && version.contains(&format!("(rev {revision})")),
        "label {revision} against {version}"
    );
    assert!(labels["org.opencontainers.image.source"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    // The image says what its binary says.
    assert_eq!(
        podman_ok(&["run", "--rm", "--read-only", image, "--version"]),
        version.trim()
    );
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    // Small: the base adds at most 20 MB to the binary (the release image measures 32 MB, the
    // 15.6 MB base included; this test's debug binary is larger, so the image is not judged
    // whole).
    let size: u64 = inspect("{{.Size}}").parse().unwrap();
    let files = image_files(image);
    let binary = files
        .iter()
        .find(|f| f.path == "usr/local/bin/ords-guard")
        .expect("usr/local/bin/ords-guard is in the image");
    assert!(
        size.saturating_sub(binary.size) <= 20_000_000,
        "{size} bytes, {} of them the binary",
        binary.size
    );
    // No shell, no package manager; nothing the image's user could change but /tmp and its
    // home; the CA bundle is the Mozilla set, not this host's own additions.
    for f in &files {
        assert!(
            !f.path.starts_with("usr/bin/apt")
                && !f.path.starts_with("usr/bin/dpkg")
                && ![
                    "bin/sh",
                    "bin/bash",
                    "bin/dash",
                    "bin/busybox",
                    "usr/bin/sh",
                    "usr/bin/bash",
                    "usr/bin/dash",
                    "usr/bin/busybox"
                ]
                .contains(&f.path.as_str()),
            "{} is in the image",
            f.path
        );
        let theirs = f.owner != "0/0" || (f.mode.as_bytes()[8] == b'w' && !f.mode.starts_with('l'));
        assert!(
            !theirs || f.path == "tmp/" || f.path.starts_with("home/nonroot/"),
            "{} {} {}: writable by the image's user",
            f.mode,
            f.owner,
            f.path
        );
    }
    let bundle = image_file(image, "/etc/ssl/certs/ca-certificates.crt");
    let mozilla = std::fs::read_dir("/usr/share/ca-certificates/mozilla")
        .unwrap()
        .count();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), mozilla);
    // The from-source build's context holds what cargo needs, and nothing else.
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    assert_eq!(ignore.lines().find(|l| !l.starts_with('#')), Some("*"));
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src",
        "config",
        "benches",
    ] {
        assert!(
            allowed.contains(&needed),
            ".dockerignore keeps out {needed}"
        );
    }
    // A from-source build labels the image with the Containerfile's VERSION: Cargo.toml's.
    let containerfile =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/Containerfile")).unwrap();
    assert!(
        containerfile.contains(&format!("ARG VERSION={}\n", env!("CARGO_PKG_VERSION"))),
        "deploy/Containerfile's VERSION differs from Cargo.toml's"
    );
}

/// `ords-guard demo` started in the image, read-only, with `flags` for podman; the proxy
/// (when asked) and the admin port published on loopback.
fn run_demo(name: &str, flags: &[&str], proxy: Option<u16>, admin: u16) {
    let published: Vec<String> = proxy
        .map(|p| format!("127.0.0.1:{p}:8080"))
        .into_iter()
        .chain([format!("127.0.0.1:{admin}:9090")])
        .flat_map(|p| ["-p".to_string(), p])
        .collect();
    let mut args: Vec<&str> = vec!["run", "-d", "--name", name, "--read-only"];
    args.extend(flags);
    args.extend(published.iter().map(String::as_str));
    args.extend([
        image(),
        "--log-format",
        "json",
        "demo",
        "--listen",
        "0.0.0.0:8080",
        "--admin-listen",
        "0.0.0.0:9090",
    ]);
    podman_ok(&args);
}

/// `ords-guard demo` in the image as a user runs it: read-only root filesystem with no tmpfs
/// at all (`--read-only-tmpfs=false`, docker's `--read-only`), the image's non-root user,
/// ports published on loopback; the README's curl lines; `podman stop` drains and the exit
/// is 0, not the 137 of a SIGKILL after the timeout.
#[tokio::test]
async fn demo_runs_read_only_as_non_root_and_stops_on_sigterm() {
    let (proxy, admin) = (free_port(), free_port());
    let name = unique("ords-guard-test-demo");
    let _cleanup = Cleanup(vec![vec!["rm".into(), "-f".into(), name.clone()]]);
    run_demo(&name, &["--read-only-tmpfs=false"], Some(proxy), admin);
    let printed = wait_log(&name, "client_secret ").await;
    // With no writable /tmp the demo's files went to the container's /dev/shm tmpfs.
    assert!(
        printed.contains("config   /dev/shm/ords-guard-demo-1-"),
        "{printed}"
    );
    wait_ready(admin, "the demo in the container to be ready").await;
    assert_eq!(
        podman_ok(&["top", &name, "user"])
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        ["nonroot"]
    );
    let (id, secret) = demo_client(&printed);
    let token = five_steps_with_curl(proxy, &id, &secret);

    podman_ok(&["stop", "--time", "30", &name]);
    assert_eq!(
        podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]),
        "0"
    );
    let log = logs(&name);
    assert!(
        log.contains(r#""message":"draining","signal":"SIGTERM""#),
        "{log}"
    );
    assert!(log.contains(r#""message":"ords-guard stopped""#), "{log}");
    assert!(!log.contains(&token), "the token reached the log");
}

/// SIGINT (Ctrl-C in `podman run -it`) drains and exits 0 as PID 1 too.
#[tokio::test]
async fn sigint_stops_pid_1() {
    let admin = free_port();
    let name = unique("ords-guard-test-sigint");
    let _cleanup = Cleanup(vec![vec!["rm".into(), "-f".into(), name.clone()]]);
    run_demo(&name, &[], None, admin);
    wait_ready(admin, "the demo in the container to be ready").await;
    podman_ok(&["kill", "--signal", "INT", &name]);
    exited(&name).await;
    assert_eq!(
        podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]),
        "0"
    );
    let log = logs(&name);
    assert!(
        log.contains(r#""message":"draining","signal":"SIGINT""#),
        "{log}"
    );
}

// ---- the sidecar pod ----

fn kubectl() -> PathBuf {
    let p = Path::new(ROOT).join(".tools/venv/bin/kubectl");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/setup.sh",
        p.display()
    );
    p
}

fn render(dir: &str) -> Vec<Value> {
    let out = Command::new(kubectl())
        .args(["kustomize", dir])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(std::str::from_utf8(&out.stdout).unwrap())
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

/// What the play needs that a cluster would not, each change to the rendered copy only
/// (the manifests users apply stay as they are):
/// - the Secret becomes a ConfigMap with the same keys: a `secret:` volume makes podman 4.3
///   panic (`VolumeFromSecret`), and the Secret's content is made here (a fresh key and
///   client) since the committed one is a placeholder;
/// - one replica, and `hostPort`s on 127.0.0.1 picked per run: three pods on one host
///   would publish the same ports;
/// - no probes: podman runs an `httpGet` probe as `curl` through a shell inside the
///   container, which a distroless image has not (the test asks `/readyz` itself);
/// - the images: this build, and the image's own `demo-backend` as the legacy app;
/// - the identity provider's and the orders service's `https://*.example.com` URLs point
///   at the pod's loopback backend: this machine reaches no other network;
/// - names with the test's process id, so runs never share a pod or a volume.
struct Play {
    yaml: String,
    pod: String,
    guard: String,
    registry_volume: String,
    secrets_volume: String,
}

fn play_copy(
    docs: &[Value],
    image: &str,
    ports: (u16, u16),
    signing_pem: &str,
    clients_yaml: &str,
) -> Play {
    let sfx = unique("t");
    let registry_volume = format!("ords-guard-registry-{sfx}");
    let secrets_volume = format!("ords-guard-secrets-{sfx}");
    let mut out = Vec::new();
    let mut deployment = None;
    for d in docs {
        let mut d = d.clone();
        match d["kind"].as_str().unwrap() {
            "ConfigMap" => {
                let text = d["data"]["ords-guard.yaml"].as_str().unwrap();
                let text = text
                    .replace("https://sso.example.com", "http://127.0.0.1:8081")
                    .replace("https://orders.example.com", "http://127.0.0.1:8081");
                d["data"]["ords-guard.yaml"] = text.into();
                d["metadata"]["name"] = registry_volume.clone().into();
                out.push(d);
            }
            "Secret" => {
                let keys: Vec<String> = d["stringData"]
                    .as_mapping()
                    .unwrap()
                    .keys()
                    .map(|k| k.as_str().unwrap().to_string())
                    .collect();
                let mut data = serde_yaml::Mapping::new();
                for k in keys {
                    let v = match k.as_str() {
                        "signing.pem" => signing_pem.to_string(),
                        "clients.yaml" => clients_yaml.to_string(),
                        _ => "a-secret-of-this-test\n".to_string(),
                    };
                    data.insert(k.into(), v.into());
                }
                let mut cm = serde_yaml::Mapping::new();
                cm.insert("apiVersion".into(), "v1".into());
                cm.insert("kind".into(), "ConfigMap".into());
                let mut meta = serde_yaml::Mapping::new();
                meta.insert("name".into(), secrets_volume.clone().into());
                cm.insert("metadata".into(), meta.into());
                cm.insert("data".into(), data.into());
                out.push(cm.into());
            }
            "Deployment" => {
                d["metadata"]["name"] = format!("legacy-rest-{sfx}").into();
                d["spec"]["replicas"] = 1.into();
                let spec = &mut d["spec"]["template"]["spec"];
                for c in spec["containers"].as_sequence_mut().unwrap() {
                    c["image"] = image.into();
                    let m = c.as_mapping_mut().unwrap();
                    m.remove("livenessProbe");
                    m.remove("readinessProbe");
                    if c["name"] == "legacy-app" {
                        let env = c["env"].as_sequence().unwrap();
                        let listen = env.iter().find(|e| e["name"] == "LISTEN_ADDRESS").unwrap()
                            ["value"]
                            .as_str()
                            .unwrap()
                            .to_string();
                        c["args"] =
                            serde_yaml::to_value(["demo-backend", "--listen", &listen]).unwrap();
                    } else {
                        for p in c["ports"].as_sequence_mut().unwrap() {
                            let host = if p["name"] == "http" {
                                ports.0
                            } else {
                                ports.1
                            };
                            p["hostPort"] = host.into();
                            p["hostIP"] = "127.0.0.1".into();
                        }
                    }
                }
                for v in spec["volumes"].as_sequence_mut().unwrap() {
                    let m = v.as_mapping_mut().unwrap();
                    if m.remove("secret").is_some() {
                        let mut cm = serde_yaml::Mapping::new();
                        cm.insert("name".into(), secrets_volume.clone().into());
                        m.insert("configMap".into(), cm.into());
                    } else {
                        v["configMap"]["name"] = registry_volume.clone().into();
                    }
                }
                deployment = Some(d["metadata"]["name"].as_str().unwrap().to_string());
                out.push(d);
            }
            _ => {}
        }
    }
    let yaml = out
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let pod = format!("{}-pod-0", deployment.expect("a Deployment"));
    Play {
        yaml,
        guard: format!("{pod}-ords-guard"),
        pod,
        registry_volume,
        secrets_volume,
    }
}

/// The sidecar pod of `deploy/kubernetes/overlays/example`, played: the ConfigMap's
/// registry loaded, the seed's flow through the pod's port, `/readyz`, the JSON access log,
/// a reload by SIGHUP after the mounted registry changed, and a drained stop with exit 0.
#[tokio::test]
async fn the_sidecar_pod_plays_reloads_and_drains() {
    let image = image();
    let ports = (free_port(), free_port());
    let keys = ords_guard::oauth::keys::generate(ords_guard::config::Algorithm::ES256);
    let (client, secret) =
        ords_guard::cli::new_client("Example Client", vec!["example_role".into()], vec![]);
    let play = play_copy(
        &render("deploy/kubernetes/overlays/example"),
        image,
        ports,
        std::str::from_utf8(&keys.private).unwrap(),
        &serde_yaml::to_string(&vec![client.clone()]).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("play.yaml");
    std::fs::write(&file, &play.yaml).unwrap();
    let file = file.to_str().unwrap().to_string();
    let _cleanup = Cleanup(vec![
        vec!["kube".into(), "down".into(), file.clone()],
        vec![
            "volume".into(),
            "rm".into(),
            "-f".into(),
            play.registry_volume.clone(),
            play.secrets_volume.clone(),
        ],
    ]);
    podman_ok(&["kube", "play", &file]);
    wait_ready(ports.1, "the pod's ords-guard to be ready").await;
    let loaded = logs(&play.guard);
    assert!(
        loaded.contains(r#""config":"/etc/ords-guard/config/ords-guard.yaml""#)
            && loaded.contains(r#""egress":1"#),
        "{loaded}"
    );

    // The seed's flow through the pod's published port: 401, token, 200 with X-ORDS-*.
    let token = five_steps_with_curl(ports.0, &client.client_id, &secret);
    let access = wait_log(&play.guard, r#""decision":"forwarded""#).await;
    let line = access
        .lines()
        .find(|l| l.contains(r#""decision":"forwarded""#))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["status"], 200);
    assert_eq!(line["client_id"], client.client_id.as_str());
    assert_eq!(line["privilege"], "example_priv");
    assert!(!access.contains(&token) && !access.contains(&secret));

    // A reload: the mounted registry gains a privilege for /reloaded/*. Before, `unmatched:
    // deny` refuses the path with 403; after, it wants a token (401) and opens to any valid
    // one. The file watcher sees the change first (as it sees a kubelet's ConfigMap swap);
    // then SIGHUP through `podman kill` reloads again, counted as a successful reload of its
    // own, and the privilege still holds.
    let http = http_client();
    let url = format!("http://127.0.0.1:{}/ords/hr/reloaded/x", ports.0);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 403);
    let mount = podman_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        &play.registry_volume,
    ]);
    let registry = Path::new(&mount).join("ords-guard.yaml");
    let mut text = std::fs::read_to_string(&registry).unwrap();
    assert!(text
        .trim_end()
        .ends_with("description: Any valid token may read the docs"));
    text.push_str("  - name: reloaded\n    patterns: [\"/reloaded/*\"]\n");
    let staged = Path::new(&mount).join(".ords-guard.yaml.new");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, &registry).unwrap();
    eventually("the changed registry to be enforced", || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&url).send().await.unwrap().status() == 401 }
    })
    .await;
    let reloads = |http: reqwest::Client| async move {
        let text = http
            .get(format!("http://127.0.0.1:{}/metrics", ports.1))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("ords_guard_config_reloads_total{result=\"success\"} "))
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    let by_watcher = reloads(http.clone()).await;
    assert!(by_watcher >= 1.0, "{by_watcher}");
    podman_ok(&["kill", "--signal", "HUP", &play.guard]);
    wait_log(&play.guard, "SIGHUP: reloading the config").await;
    eventually("the SIGHUP reload to be counted", || {
        let http = http.clone();
        async move { reloads(http).await == by_watcher + 1.0 }
    })
    .await;
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let opened = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(opened.status(), 200);

    // The stop a kubelet makes: SIGTERM, then the grace (terminationGracePeriodSeconds).
    // `podman kube down` before podman 5.1 stops with a timeout of 0, SIGKILL at once (exit
    // 137, measured with 4.3), so the pod is stopped first as a cluster
    // would stop it, then taken down.
    podman_ok(&["pod", "stop", "--time", "30", &play.pod]);
    assert_eq!(
        podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &play.guard]),
        "0"
    );
    let log = logs(&play.guard);
    assert!(
        log.contains(r#""message":"draining","signal":"SIGTERM""#),
        "{log}"
    );
    podman_ok(&["kube", "down", &file]);
}
