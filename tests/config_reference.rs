//! The configuration reference (`docs/src/reference/configuration.md`) lists every key the
//! config schema accepts, and no other.
//!
//! The schema's keys are read from the code: `serde-reflection` traces the `Deserialize` of
//! `ords_guard::config::Config`, which records each struct's field names as serde itself
//! knows them (renames and aliases included), and the registry of containers it builds is
//! walked into dotted paths: `timeouts.upstream_read_ms`, `privileges[].patterns` (`[]` for
//! a list, nothing for an `Option`). Every field is a key, sections and lists included
//! (`timeouts`, `privileges`), so each section's table has a row for the section itself.
//! A map (`egress[].token_params`) is one key: its keys are the user's.
//!
//! The page's keys are the backticked first cells of the rows of its tables whose header
//! starts with `key`.

use ords_guard::config::{ClientConfig, Config, ConfigError, IssuerConfig, Source};
use serde_reflection::{
    ContainerFormat, Error, Format, Registry, Samples, Tracer, TracerConfig, VariantFormat,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const PAGE: &str = "docs/src/reference/configuration.md";

/// The one type serde-reflection cannot trace by deserializing it: `issuers[].audience` is
/// read by `one_or_many` (`deserialize_with`), an untagged enum (`api` or `[api, other]`),
/// and untagged enums need `deserialize_any`, which a tracer cannot answer. Every field name
/// of `IssuerConfig` is still recorded (serde hands the tracer the struct's field list before
/// any field is read), but the shapes of `audience` and of the fields after it are not. This
/// sample gives them, by tracing its serialization, which has no such limit.
///
/// Every field must be set to something serialized (not the default of a
/// `skip_serializing_if` field): else the two field lists traced for `IssuerConfig` differ
/// and the test stops. A new nested object here must have all its keys set too.
const ISSUER_SAMPLE: &str = r#"
name: corp
issuer: "https://idp.example.com/{tenantid}"
audience: [orders-api]
jwks_url: "https://idp.example.com/keys"
jwks_file: keys/corp.jwks.json
ca_file: keys/corp-ca.pem
algorithms: [RS256]
roles_claim: /roles
client_id_claim: /azp
privileges: [orders_read]
allowed_skew_seconds: 30
max_age_seconds: 0
refresh_seconds: 600
tenants: ["8f5c1e2a-0000-4000-8000-000000000001"]
introspection:
  url: "https://idp.example.com/introspect"
  client_id: ords-guard
  client_secret_file: secrets/introspect.secret
  auth_method: basic
  cache_seconds: 60
"#;

/// Every key the schema accepts, as dotted paths.
fn schema_keys() -> BTreeSet<String> {
    // `clients_file` holds a YAML list of the same entries as `clients`: no second schema
    // to trace. Should that change, this line stops compiling.
    type ReadClients = fn(&Path) -> Result<(Vec<ClientConfig>, Source), ConfigError>;
    let _: ReadClients = ords_guard::config::read_clients;

    let mut tracer = Tracer::new(TracerConfig::default());
    let mut samples = Samples::new();
    let issuer: IssuerConfig = serde_yaml::from_str(ISSUER_SAMPLE).expect("ISSUER_SAMPLE");
    tracer
        .trace_value(&mut samples, &issuer)
        .expect("tracing the serialization of ISSUER_SAMPLE");

    // A trace stops at the first field it cannot read (`issuers[].audience`, see
    // ISSUER_SAMPLE). What it learnt stays in the registry, and a list whose element type is
    // known is not entered again, so the next trace goes past it. Only that kind of failure
    // is expected: anything else (ISSUER_SAMPLE not matching `IssuerConfig`) is fatal.
    let mut retries = 0;
    loop {
        match tracer.trace_simple_type::<Config>() {
            Ok(_) => break,
            Err(Error::NotSupported("deserialize_any")) if retries < 8 => retries += 1,
            Err(e) => panic!(
                "serde-reflection cannot trace Config (after {retries} retries): {e}\n\
                 (`Incompatible formats` of two field lists: ISSUER_SAMPLE lacks a field of \
                 IssuerConfig)"
            ),
        }
    }
    // Unchecked: enums nested in lists or options are not explored to their last variant,
    // and their variants are values, not keys (`walk` refuses an enum that carries data).
    // Fields whose shape stayed unknown are caught by `walk`.
    let registry = tracer.registry_unchecked();

    let mut keys = BTreeSet::new();
    let mut untraced = Vec::new();
    walk(
        &registry,
        &Format::TypeName("Config".into()),
        "",
        &mut keys,
        &mut untraced,
    );
    assert!(
        untraced.is_empty(),
        "serde-reflection could not trace the shape of {untraced:?}: give it a sample, as \
         ISSUER_SAMPLE does for issuers[]"
    );
    keys
}

/// Add to `keys` the fields reached through `format`, at `path`.
fn walk(
    registry: &Registry,
    format: &Format,
    path: &str,
    keys: &mut BTreeSet<String>,
    untraced: &mut Vec<String>,
) {
    match format {
        Format::Variable(_) => untraced.push(path.to_string()),
        Format::Option(inner) => walk(registry, inner, path, keys, untraced),
        Format::Seq(inner) => walk(registry, inner, &format!("{path}[]"), keys, untraced),
        Format::TypeName(name) => match &registry[name] {
            ContainerFormat::Struct(fields) => {
                for field in fields {
                    let key = match path {
                        "" => field.name.clone(),
                        _ => format!("{path}.{}", field.name),
                    };
                    keys.insert(key.clone());
                    walk(registry, &field.value, &key, keys, untraced);
                }
            }
            ContainerFormat::NewTypeStruct(inner) => walk(registry, inner, path, keys, untraced),
            ContainerFormat::Enum(variants) => assert!(
                variants
                    .values()
                    .all(|v| matches!(v.value, VariantFormat::Unit)),
                "enum {name} at `{path}` carries data: teach this test its keys"
            ),
            ContainerFormat::UnitStruct | ContainerFormat::TupleStruct(_) => {}
        },
        // Scalars, and maps whose keys the user chooses.
        _ => {}
    }
}

/// The keys the page's tables list, with the line each is on.
fn page_keys(text: &str) -> Vec<(String, usize)> {
    let mut keys = Vec::new();
    let mut in_key_table = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(row) = line.strip_prefix('|') else {
            in_key_table = false;
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if first == "key" {
            in_key_table = true;
        } else if !in_key_table || first.chars().all(|c| matches!(c, '-' | ':')) {
            // Another kind of table, or the header's separator row.
        } else {
            let key = first
                .strip_prefix('`')
                .and_then(|k| k.strip_suffix('`'))
                .filter(|k| !k.is_empty() && !k.contains('`'));
            match key {
                Some(k) => keys.push((k.to_string(), i + 1)),
                None => panic!(
                    "{PAGE}:{}: the first cell of a key table's row must be one `key`: {first}",
                    i + 1
                ),
            }
        }
    }
    keys
}

#[test]
fn the_configuration_reference_lists_every_key_and_only_those() {
    let schema = schema_keys();
    let page_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(PAGE);
    let text = std::fs::read_to_string(&page_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", page_file.display()));
    let listed = page_keys(&text);

    let mut page = BTreeSet::new();
    let mut twice = Vec::new();
    for (k, line) in &listed {
        if !page.insert(k.clone()) {
            twice.push(format!("{PAGE}:{line}: `{k}`"));
        }
    }
    let missing: Vec<_> = schema.difference(&page).collect();
    let unknown: Vec<_> = listed
        .iter()
        .filter(|(k, _)| !schema.contains(k))
        .map(|(k, line)| format!("{PAGE}:{line}: `{k}`"))
        .collect();

    let mut report = String::new();
    if !missing.is_empty() {
        report += &format!(
            "\nkeys the schema accepts that {PAGE} does not list (add a row):\n  {}",
            missing
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    if !unknown.is_empty() {
        report += &format!(
            "\nkeys listed that the schema does not accept (remove or rename the row):\n  {}",
            unknown.join("\n  ")
        );
    }
    if !twice.is_empty() {
        report += &format!("\nkeys listed twice:\n  {}", twice.join("\n  "));
    }
    assert!(report.is_empty(), "{report}");
    // A sanity check of the tracing itself: a few keys of every depth.
    for k in [
        "listen",
        "timeouts.upstream_read_ms",
        "privileges[].patterns",
        "issuers[].audience",
        "egress[].upstream_tls.ca_file",
        "token.verification_keys[].file",
    ] {
        assert!(schema.contains(k), "the trace lost `{k}`: {schema:#?}");
    }
}

#[test]
fn the_page_parser_reads_key_tables_only() {
    let text = "| metric | x |\n|---|---|\n| `not_a_key` | y |\n\n| key | default | meaning |\n|---|---|---|\n| `a.b` | 1 | c |\n| `c[].d` | | e \\| f |\n\ntext\n";
    let keys: Vec<_> = page_keys(text).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a.b", "c[].d"]);
}
