//! The `tracing` step (SPEC §15): where spans go, how many requests are sampled, the
//! service's name and the export's headers. Keys the file leaves out come from the
//! OpenTelemetry variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, used as is and winning
//! over `OTEL_EXPORTER_OTLP_ENDPOINT`; `OTEL_SERVICE_NAME`; `OTEL_TRACES_SAMPLER_ARG`);
//! without the section nothing is exported, whatever the environment says.

use crate::config::{Diagnostic, Source, TracingConfig};
use crate::traces::Settings;

/// A `headers_file` larger than this is not a headers file.
const MAX_HEADERS_FILE: u64 = 64 * 1024;

/// Requests without a valid `traceparent` are all sampled unless told otherwise (the
/// OpenTelemetry default, `parentbased_always_on`).
const DEFAULT_SAMPLE_RATIO: f64 = 1.0;

/// Check `tracing`; `env` reads a variable (the process's own outside tests).
pub fn compile(
    cfg: Option<&TracingConfig>,
    env: &dyn Fn(&str) -> Option<String>,
    src: &Source,
    errors: &mut Vec<Diagnostic>,
) -> Option<Settings> {
    let t = cfg?;
    let before = errors.len();
    let endpoint = endpoint(t, env, errors);
    let sample_ratio = match (&t.sample_ratio, env("OTEL_TRACES_SAMPLER_ARG")) {
        (Some(r), _) => ratio(*r, "tracing.sample_ratio", "", errors),
        (None, Some(v)) => match v.trim().parse::<f64>() {
            Ok(r) => ratio(
                r,
                "tracing.sample_ratio",
                " (from OTEL_TRACES_SAMPLER_ARG)",
                errors,
            ),
            Err(_) => {
                errors.push(Diagnostic::new(
                    "tracing.sample_ratio",
                    format!("OTEL_TRACES_SAMPLER_ARG `{v}` is not a number from 0.0 to 1.0: fix the variable, or give sample_ratio"),
                ));
                0.0
            }
        },
        (None, None) => DEFAULT_SAMPLE_RATIO,
    };
    let service_name = t
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "ords-guard".into());
    if service_name.trim().is_empty() {
        errors.push(Diagnostic::new(
            "tracing.service_name",
            "the service name is empty: give a name, or leave the key out for `ords-guard`",
        ));
    }
    let headers = match &t.headers_file {
        Some(f) => headers_file(&src.resolve(f), errors),
        None => Vec::new(),
    };
    (errors.len() == before).then(|| Settings {
        endpoint: endpoint.unwrap_or_default(),
        sample_ratio,
        service_name,
        headers,
    })
}

/// The traces URL: the file's `otlp_endpoint` + `/v1/traces`, else the variables'. It
/// must be `https://`, or `http://` to a loopback address (spans name clients and paths).
fn endpoint(
    t: &TracingConfig,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
) -> Option<String> {
    let base = |b: &str| format!("{}/v1/traces", b.trim_end_matches('/'));
    let (url, from) = match (
        &t.otlp_endpoint,
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        env("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(e), _, _) => (base(e), ""),
        (None, Some(e), _) => (e, " (from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)"),
        (None, None, Some(e)) => (base(&e), " (from OTEL_EXPORTER_OTLP_ENDPOINT)"),
        (None, None, None) => {
            errors.push(Diagnostic::new(
                "tracing.otlp_endpoint",
                "no collector to send spans to: give otlp_endpoint (such as http://127.0.0.1:4318), or set OTEL_EXPORTER_OTLP_ENDPOINT",
            ));
            return None;
        }
    };
    let uri: Option<http::Uri> = url.parse().ok();
    let why = match &uri {
        None => Some("is not a URL such as http://127.0.0.1:4318"),
        Some(u) if u.authority().is_some_and(|a| a.as_str().contains('@')) => {
            Some("holds credentials: put them in headers_file instead")
        }
        Some(u) if u.query().is_some() => Some("has a query: give the collector's base URL"),
        Some(u) => match u.scheme_str() {
            Some("https") => None,
            Some("http") if super::upstream::is_loopback_url(u) => None,
            Some("http") => Some("is plain http to another host: use https://, or a collector on loopback (a sidecar in the pod)"),
            _ => Some("must start with https:// (or http:// to a loopback address)"),
        },
    };
    match why {
        Some(why) => {
            errors.push(Diagnostic::new(
                "tracing.otlp_endpoint",
                format!("the endpoint `{}`{from} {why}", redacted(&url)),
            ));
            None
        }
        None => Some(url),
    }
}

/// A URL for a message, without what could be a credential: the user part, and any
/// query or fragment (some vendors take an API key there).
fn redacted(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://…@{host}"),
            None => url.to_string(),
        },
        None => "(not a URL)".to_string(),
    }
}

fn ratio(r: f64, key: &str, from: &str, errors: &mut Vec<Diagnostic>) -> f64 {
    if (0.0..=1.0).contains(&r) {
        return r;
    }
    errors.push(Diagnostic::new(
        key,
        format!("the sample ratio {r}{from} is not from 0.0 to 1.0"),
    ));
    0.0
}

/// `Name: value` lines (blank lines and `#` comments skipped). A value is never echoed:
/// it is usually a credential.
fn headers_file(path: &std::path::Path, errors: &mut Vec<Diagnostic>) -> Vec<(String, String)> {
    let key = "tracing.headers_file";
    let text = match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_HEADERS_FILE => {
            errors.push(Diagnostic::new(
                key,
                format!(
                    "{} is over {MAX_HEADERS_FILE} bytes: it should hold a few `Name: value` lines",
                    path.display()
                ),
            ));
            return Vec::new();
        }
        // Read through a bound as well: a FIFO or a device has no length to check.
        _ => match std::fs::File::open(path).and_then(|f| {
            let mut t = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(f, MAX_HEADERS_FILE + 1),
                &mut t,
            )?;
            Ok(t)
        }) {
            Ok(t) if t.len() as u64 > MAX_HEADERS_FILE => {
                errors.push(Diagnostic::new(key, format!("{} is over {MAX_HEADERS_FILE} bytes: it should hold a few `Name: value` lines", path.display())));
                return Vec::new();
            }
            Ok(t) => t,
            Err(e) => {
                errors.push(Diagnostic::new(
                    key,
                    format!("cannot read {}: {e}", path.display()),
                ));
                return Vec::new();
            }
        },
    };
    let mut headers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{} line {}", path.display(), i + 1);
        let Some((name, value)) = line.split_once(':') else {
            errors.push(Diagnostic::new(key, format!("{at} is not `Name: value`")));
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(Diagnostic::new(
                key,
                format!("{at}: `{name}` is not a header name"),
            ));
        } else if http::HeaderValue::from_str(value).is_err() {
            errors.push(Diagnostic::new(
                key,
                format!("{at}: the value of `{name}` holds a byte a header cannot carry"),
            ));
        } else {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn compiled(yaml: &str, vars: &[(&str, &str)]) -> (Option<Settings>, Vec<Diagnostic>) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cfg: TracingConfig = serde_yaml::from_str(yaml).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("h"),
            "# comment\n\nAuthorization: Basic c2VjcmV0\nx-tenant : a\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad"),
            "Authorization Basic c2VjcmV0\nbad name: x\n",
        )
        .unwrap();
        let src = Source::new(&dir.path().join("g.yaml"), "");
        let mut errors = Vec::new();
        let s = compile(Some(&cfg), &|k| vars.get(k).cloned(), &src, &mut errors);
        (s, errors)
    }

    #[test]
    fn the_file_wins_then_the_variables_then_defaults() {
        let (s, e) = compiled(
            "{otlp_endpoint: \"http://127.0.0.1:4318/\"}",
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://other")],
        );
        let s = s.unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(s.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(
            (s.sample_ratio, s.service_name.as_str()),
            (1.0, "ords-guard")
        );

        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/custom",
            ),
            ("OTEL_SERVICE_NAME", "orders-guard"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ];
        let s = compiled("{headers_file: h}", &env).0.unwrap();
        assert_eq!(s.endpoint, "https://traces.example/custom");
        assert_eq!(
            (s.sample_ratio, s.service_name.as_str()),
            (0.25, "orders-guard")
        );
        assert_eq!(
            s.headers,
            [
                ("Authorization".to_string(), "Basic c2VjcmV0".to_string()),
                ("x-tenant".to_string(), "a".to_string())
            ]
        );
        // The values never reach a debug print.
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        let s = compiled("{sample_ratio: 0.5, service_name: x}", &env[..1])
            .0
            .unwrap();
        assert_eq!(s.endpoint, "https://collector.example/v1/traces");
        assert_eq!((s.sample_ratio, s.service_name.as_str()), (0.5, "x"));
    }

    #[test]
    fn errors_name_the_key_and_never_a_secret() {
        for (yaml, vars, says) in [
            ("{}", &[][..], "no collector"),
            (
                "{otlp_endpoint: \"http://10.0.0.1:4318\"}",
                &[][..],
                "plain http to another host",
            ),
            (
                "{otlp_endpoint: \"https://user:hunter2@c.example\"}",
                &[][..],
                "holds credentials",
            ),
            (
                "{otlp_endpoint: \"https://c.example/x?api-key=hunter2\"}",
                &[][..],
                "has a query",
            ),
            (
                "{otlp_endpoint: \"grpc://c\"}",
                &[][..],
                "must start with https://",
            ),
            (
                "{}",
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c.example")][..],
                "(from OTEL_EXPORTER_OTLP_ENDPOINT)",
            ),
        ] {
            let (s, e) = compiled(yaml, vars);
            assert!(s.is_none() && e.len() == 1, "{yaml}: {e:?}");
            assert_eq!(e[0].path, "tracing.otlp_endpoint");
            assert!(e[0].message.contains(says), "{yaml}: {}", e[0].message);
            assert!(!e[0].message.contains("hunter2"), "{}", e[0].message);
        }
        let ok = "otlp_endpoint: \"http://localhost:4318\"\n";
        for (yaml, vars, key) in [
            (
                format!("{ok}sample_ratio: 1.5"),
                &[][..],
                "tracing.sample_ratio",
            ),
            (
                ok.to_string(),
                &[("OTEL_TRACES_SAMPLER_ARG", "half")][..],
                "tracing.sample_ratio",
            ),
            (
                format!("{ok}service_name: \" \""),
                &[][..],
                "tracing.service_name",
            ),
            (
                format!("{ok}headers_file: nope"),
                &[][..],
                "tracing.headers_file",
            ),
        ] {
            let (s, e) = compiled(&yaml, vars);
            assert!(s.is_none() && e.len() == 1, "{yaml}: {e:?}");
            assert_eq!(e[0].path, key, "{yaml}");
        }
        let (s, e) = compiled(&format!("{ok}headers_file: bad"), &[]);
        assert!(s.is_none());
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].message.contains("line 1 is not `Name: value`"),
            "{}",
            e[0].message
        );
        assert!(
            e[1].message
                .contains("line 2: `bad name` is not a header name"),
            "{}",
            e[1].message
        );
        assert!(!e.iter().any(|e| e.message.contains("c2VjcmV0")));
    }
}
