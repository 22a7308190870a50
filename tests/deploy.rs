//! The shipped artifacts: Kubernetes manifests render (kustomize) and validate against the
//! Kubernetes OpenAPI schemas offline; the configs under `config/` and inside the ConfigMap
//! pass `ords-guard check`; the Deployment is hardened and wired as SPEC says.

use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/venv/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/setup.sh",
        p.display()
    );
    p
}

fn render(dir: &str) -> Vec<Value> {
    let out = Command::new(tool("kubectl"))
        .args(["kustomize", dir])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Validate the rendered stream against the Kubernetes schemas, strictly.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &text).unwrap();
    let v = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "-k", "1.31.0"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "{dir} does not validate:\n{report}");
    for kind in [
        "configmap",
        "secret",
        "service",
        "deployment",
        "poddisruptionbudget",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}/")),
            "{dir}: {kind} not validated:\n{report}"
        );
    }
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

use serde::Deserialize;

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn container<'a>(deploy: &'a Value, name: &str) -> &'a Value {
    deploy["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn check(config: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} fails check:\n{}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn base_and_overlay_render_and_validate() {
    let base = render("deploy/kubernetes/base");
    let overlay = render("deploy/kubernetes/overlays/example");
    let d = find(&overlay, "Deployment");
    assert_eq!(d["metadata"]["namespace"], "hr-prod");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        container(d, "ords-guard")["image"],
        "registry.example.com/ords-guard:0.1.0"
    );
    assert_eq!(find(&base, "Deployment")["spec"]["replicas"], 2);
}

#[test]
fn the_sidecar_is_the_only_listener_and_is_hardened() {
    let docs = render("deploy/kubernetes/base");
    let d = find(&docs, "Deployment");
    let pod = &d["spec"]["template"]["spec"];
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&d["spec"]["selector"]["matchLabels"], labels);

    // The Service targets ords-guard's named port; the legacy app exposes none and binds loopback.
    let svc = find(&docs, "Service");
    assert_eq!(&svc["spec"]["selector"], labels);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    let guard = container(d, "ords-guard");
    let app = container(d, "legacy-app");
    assert!(app.get("ports").is_none());
    assert!(app["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|e| e["value"].as_str().unwrap().starts_with("127.0.0.1:")));
    let ports: Vec<&str> = guard["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["http", "admin"]);

    // Probes on the admin port.
    assert_eq!(guard["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(guard["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(guard["readinessProbe"]["httpGet"]["port"], "admin");

    // Hardening, for both containers.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    for c in [guard, app] {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"][0], "ALL");
        assert!(
            c["resources"]["requests"]["memory"].is_string()
                && c["resources"]["limits"]["memory"].is_string()
        );
    }

    // ConfigMap and Secret mounted as directories (no subPath), so reload works.
    for m in guard["volumeMounts"].as_sequence().unwrap() {
        assert!(m.get("subPath").is_none(), "{m:?}");
    }

    // Scraping: annotations, and a PodMonitor whose selector and port match.
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        (
            ann["prometheus.io/scrape"].as_str(),
            ann["prometheus.io/port"].as_str()
        ),
        (Some("true"), Some("9090"))
    );
    let pm = find(&docs, "PodMonitor");
    assert_eq!(&pm["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "admin");
    assert_eq!(
        &find(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        labels
    );
}

#[test]
fn the_configmap_config_passes_check_with_the_secret_beside_it() {
    for dir in [
        "deploy/kubernetes/base",
        "deploy/kubernetes/overlays/example",
    ] {
        configmap_passes_check(dir);
    }
    // The overlay's registry is the base's plus the Keycloak issuer.
    let overlay = render("deploy/kubernetes/overlays/example");
    let text = find(&overlay, "ConfigMap")["data"]["ords-guard.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let cfg: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(cfg["issuers"][0]["name"], "keycloak");
    assert_eq!(cfg["issuers"][0]["roles_claim"], "/realm_access/roles");
    let base = render("deploy/kubernetes/base");
    let mut base_cfg: Value = serde_yaml::from_str(
        find(&base, "ConfigMap")["data"]["ords-guard.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    // And an egress entry whose listener only the pod reaches, the app pointed at it.
    assert_eq!(cfg["egress"][0]["name"], "orders");
    assert!(cfg["egress"][0]["listen"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let app = container(find(&overlay, "Deployment"), "legacy-app");
    let env = app["env"].as_sequence().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "ORDERS_API_URL" && e["value"] == "http://127.0.0.1:8082"));
    let secret = find(&overlay, "Secret");
    assert!(secret["stringData"]["orders.secret"].is_string());
    assert!(secret["stringData"]["clients.yaml"].is_string());
    let mut without = cfg.clone();
    for added in ["issuers", "egress"] {
        without.as_mapping_mut().unwrap().remove(added);
        base_cfg.as_mapping_mut().unwrap().remove(added);
    }
    assert_eq!(
        without, base_cfg,
        "the overlay's registry drifted from the base's"
    );
}

fn configmap_passes_check(dir: &str) {
    let docs = render(dir);
    let cm = find(&docs, "ConfigMap");
    let config = cm["data"]["ords-guard.yaml"].as_str().unwrap();
    // The pod's layout: /etc/ords-guard/config and /etc/ords-guard/secret.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    std::fs::write(root.path().join("config/ords-guard.yaml"), config).unwrap();
    let secret = root.path().join("secret");
    ords_guard::oauth::keys::write_generated(
        &secret,
        &ords_guard::oauth::keys::generate(ords_guard::config::Algorithm::ES256),
    )
    .unwrap();
    let (client, _) =
        ords_guard::cli::new_client("Example Client", vec!["example_role".into()], vec![]);
    // The overlay's egress entry reads its client secret there too.
    std::fs::write(secret.join("orders.secret"), "egress-secret\n").unwrap();
    std::fs::write(
        secret.join("clients.yaml"),
        serde_yaml::to_string(&vec![client]).unwrap(),
    )
    .unwrap();
    check(&root.path().join("config/ords-guard.yaml"));
}

#[test]
fn the_example_config_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ords-guard.example.yaml");
    std::fs::copy(&example, dir.path().join("ords-guard.yaml")).unwrap();
    // The one step its header asks for: the signing key.
    ords_guard::oauth::keys::write_generated(
        &dir.path().join("keys"),
        &ords_guard::oauth::keys::generate(ords_guard::config::Algorithm::ES256),
    )
    .unwrap();
    check(&dir.path().join("ords-guard.yaml"));
}

/// SPEC §14: ords-guard as the authz service beside an ingress. The manifests validate, the
/// registry passes `check`, the ingress asks the service's check endpoint and copies every
/// identity header, and only the ingress may ask.
#[test]
fn the_authz_service_beside_an_ingress() {
    let dir = "deploy/kubernetes/authz";
    configmap_passes_check(dir);
    let docs = render(dir);
    let cfg: Value = serde_yaml::from_str(
        find(&docs, "ConfigMap")["data"]["ords-guard.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["authz"]["listen"], "0.0.0.0:9191");
    assert!(cfg["authz"]["trusted_peers"].as_sequence().is_some());
    assert!(cfg.get("listen").is_none() && cfg.get("upstream").is_none());
    let d = find(&docs, "Deployment");
    let guard = container(d, "ords-guard");
    assert_eq!(guard["ports"][0]["containerPort"], 9191);
    assert_eq!(guard["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(guard["readinessProbe"]["httpGet"]["path"], "/readyz");
    let svc = find(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9191);
    let name = svc["metadata"]["name"].as_str().unwrap();
    let ingress = docs
        .iter()
        .find(|d| d["kind"] == "Ingress" && d["metadata"]["annotations"].is_mapping())
        .expect("the ingress that asks");
    let ann = &ingress["metadata"]["annotations"];
    assert_eq!(
        ann["nginx.ingress.kubernetes.io/auth-url"],
        format!("http://{name}.hr-prod.svc.cluster.local:9191/authz/auth-request").as_str()
    );
    let copied: Vec<&str> = ann["nginx.ingress.kubernetes.io/auth-response-headers"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    for h in [
        "X-ORDS-Client-Id",
        "X-ORDS-Client-Name",
        "X-ORDS-Roles",
        "X-ORDS-Privilege",
        "X-ORDS-Issuer",
        "X-ORDS-Subject",
    ] {
        assert!(
            copied.contains(&h),
            "{h} is not copied, so a client's copy passes"
        );
    }
}
