//! RFC 8414 authorization server metadata (SPEC §16): where ords-guard's own token
//! endpoint, keys, introspection and revocation are, for a client that discovers them from
//! the issuer. Compiled once with the registry: a document and the paths that serve it.

use crate::config::Diagnostic;

/// The well-known path's own part (RFC 8414 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";

/// The metadata and the request paths that answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    paths: Vec<String>,
    body: Vec<u8>,
}

impl Discovery {
    /// The document, when `path` is one of its paths.
    pub fn at(&self, path: &str) -> Option<&[u8]> {
        self.paths
            .iter()
            .any(|p| p == path)
            .then_some(self.body.as_slice())
    }
}

/// Whether `path` is one ords-guard keeps for metadata (answered, 200 or 404, never
/// forwarded): the well-known path with any suffix, and the well-known path under
/// `base_path` (`base` without its trailing `/`).
pub fn reserved(path: &str, base: &str) -> bool {
    match path.strip_prefix(WELL_KNOWN) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => !base.is_empty() && path.strip_prefix(base) == Some(WELL_KNOWN),
    }
}

/// The metadata for `issuer` (`token.issuer`), when it is an `https://` URL (or `http://`
/// to loopback) whose path is empty or `base_path`; `None` otherwise, with a warning when
/// it is such a URL with another path (RFC 8414 builds the well-known path from it).
pub fn compile(issuer: &str, base: &str, warnings: &mut Vec<Diagnostic>) -> Option<Discovery> {
    let uri: http::Uri = issuer.parse().ok()?;
    let (scheme, authority) = (uri.scheme_str()?, uri.authority()?);
    let describable = match scheme {
        "https" => true,
        "http" => super::upstream::is_loopback_url(&uri),
        _ => false,
    };
    if !describable || authority.as_str().contains('@') {
        return None;
    }
    let path = uri.path().trim_end_matches('/');
    if uri.query().is_some() || (!path.is_empty() && path != base) {
        warnings.push(Diagnostic::new(
            "token.issuer",
            format!("`{issuer}` has a path other than base_path (or a query): RFC 8414 metadata is served only for an issuer whose path is empty or base_path, so clients cannot discover the token endpoint from it"),
        ));
        return None;
    }
    let paths = if path.is_empty() {
        let mut p = vec![WELL_KNOWN.to_string()];
        if !base.is_empty() {
            p.push(format!("{base}{WELL_KNOWN}"));
        }
        p
    } else {
        vec![format!("{WELL_KNOWN}{path}")]
    };
    let endpoint = |name: &str| format!("{scheme}://{authority}{base}/oauth/{name}");
    let body = serde_json::to_vec(&serde_json::json!({
        "issuer": issuer,
        "token_endpoint": endpoint("token"),
        "jwks_uri": endpoint("jwks"),
        "introspection_endpoint": endpoint("introspect"),
        "revocation_endpoint": endpoint("revoke"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
    }))
    .expect("json");
    Some(Discovery { paths, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(issuer: &str, base: &str) -> (Option<serde_json::Value>, Vec<String>, usize) {
        let mut warnings = Vec::new();
        let d = compile(issuer, base, &mut warnings);
        let paths = d.as_ref().map(|d| d.paths.clone()).unwrap_or_default();
        let doc = d.map(|d| serde_json::from_slice(&d.body).unwrap());
        (doc, paths, warnings.len())
    }

    #[test]
    fn an_issuer_without_a_path_is_described_at_both_well_known_paths() {
        let (doc, paths, warned) = metadata("https://api.example.com", "/ords/hr");
        let doc = doc.unwrap();
        assert_eq!(doc["issuer"], "https://api.example.com");
        assert_eq!(
            doc["token_endpoint"],
            "https://api.example.com/ords/hr/oauth/token"
        );
        assert_eq!(
            doc["jwks_uri"],
            "https://api.example.com/ords/hr/oauth/jwks"
        );
        assert_eq!(
            doc["introspection_endpoint"],
            "https://api.example.com/ords/hr/oauth/introspect"
        );
        assert_eq!(
            doc["revocation_endpoint"],
            "https://api.example.com/ords/hr/oauth/revoke"
        );
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["client_credentials"])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!([]));
        assert_eq!(
            paths,
            [WELL_KNOWN.to_string(), format!("/ords/hr{WELL_KNOWN}")]
        );
        assert_eq!(warned, 0);
        // base_path `/`: one path; a trailing `/` on the issuer is no path.
        let (doc, paths, _) = metadata("http://127.0.0.1:8080/", "");
        assert_eq!(
            doc.unwrap()["token_endpoint"],
            "http://127.0.0.1:8080/oauth/token"
        );
        assert_eq!(paths, [WELL_KNOWN]);
    }

    #[test]
    fn an_issuer_at_base_path_is_described_under_it() {
        let (doc, paths, _) = metadata("https://api.example.com:8443/ords/hr/", "/ords/hr");
        assert_eq!(
            doc.unwrap()["token_endpoint"],
            "https://api.example.com:8443/ords/hr/oauth/token"
        );
        assert_eq!(paths, [format!("{WELL_KNOWN}/ords/hr")]);
    }

    #[test]
    fn other_issuers_are_not_described() {
        for (issuer, warned) in [
            ("ords-guard", 0),
            ("http://api.example.com", 0), // plain http off loopback
            ("urn:example:issuer", 0),
            ("https://api.example.com/elsewhere", 1),
            ("https://api.example.com?tenant=1", 1),
        ] {
            let (doc, _, w) = metadata(issuer, "/ords/hr");
            assert!(doc.is_none(), "{issuer}");
            assert_eq!(w, warned, "{issuer}");
        }
    }

    #[test]
    fn the_reserved_paths() {
        for (path, base, kept) in [
            (WELL_KNOWN, "", true),
            (
                "/.well-known/oauth-authorization-server/ords/hr",
                "/ords/hr",
                true,
            ),
            (
                "/ords/hr/.well-known/oauth-authorization-server",
                "/ords/hr",
                true,
            ),
            ("/.well-known/oauth-authorization-serverx", "", false),
            ("/.well-known/openid-configuration", "", false),
            (
                "/ords/hr/.well-known/oauth-authorization-server/x",
                "/ords/hr",
                false,
            ),
        ] {
            assert_eq!(reserved(path, base), kept, "{path}");
        }
    }
}
