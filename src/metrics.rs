//! Prometheus metrics (SPEC §5). Labels carry only bounded values: decisions, outcomes,
//! error kinds, reload results and registered client ids — never paths, tokens or secrets.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The `decision` label values of `ords_guard_requests_total` (`Decision::label`, and
/// `bad_request` for refused paths).
pub const DECISIONS: [&str; 6] = [
    "forwarded_public",
    "forwarded",
    "unauthenticated",
    "invalid_token",
    "forbidden",
    "bad_request",
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    by_decision: [IntCounter; 6],
    pub duration: Histogram,
    pub upstream_errors: IntCounterVec,
    pub token_requests: IntCounterVec,
    pub tokens_issued: IntCounterVec,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    pub clients: IntGauge,
    pub privileges: IntGauge,
    pub connections: IntGaugeVec,
    pub limit_rejections: IntCounterVec,
}

/// The `limit` label values of `ords_guard_limit_rejections_total` (`conn::Refusal`).
pub const LIMITS: [&str; 5] = [
    "max_connections",
    "max_header_bytes",
    "max_headers",
    "client_header_timeout",
    "request_total_timeout",
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let requests = counter(
            "ords_guard_requests_total",
            "Requests on the proxy port, by access decision.",
            "decision",
        );
        let upstream_errors = counter(
            "ords_guard_upstream_errors_total",
            "Requests that failed to reach the upstream or to get its answer, by kind.",
            "kind",
        );
        let token_requests = counter(
            "ords_guard_token_requests_total",
            "Requests to the token endpoint, by outcome.",
            "outcome",
        );
        let tokens_issued = counter(
            "ords_guard_tokens_issued_total",
            "Access tokens issued, by client id.",
            "client",
        );
        let reloads = counter(
            "ords_guard_config_reloads_total",
            "Config reload attempts, by result.",
            "result",
        );
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "ords_guard_request_duration_seconds",
                "Time from request header to the end of the response, in seconds.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
        )
        .expect("metric");
        registry
            .register(Box::new(duration.clone()))
            .expect("register");
        let last_reload_success = Gauge::new(
            "ords_guard_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )
        .expect("metric");
        registry
            .register(Box::new(last_reload_success.clone()))
            .expect("register");
        let clients = IntGauge::new(
            "ords_guard_clients",
            "Registered clients in the current registry.",
        )
        .expect("metric");
        registry
            .register(Box::new(clients.clone()))
            .expect("register");
        let privileges = IntGauge::new(
            "ords_guard_privileges",
            "Privileges in the current registry.",
        )
        .expect("metric");
        registry
            .register(Box::new(privileges.clone()))
            .expect("register");
        let connections = IntGaugeVec::new(
            Opts::new(
                "ords_guard_connections",
                "Open client connections, by listener (proxy, admin).",
            ),
            &["listener"],
        )
        .expect("metric");
        registry
            .register(Box::new(connections.clone()))
            .expect("register");
        let limit_rejections = counter(
            "ords_guard_limit_rejections_total",
            "Connections and requests refused or cut by a limit (limits, timeouts), by limit.",
            "limit",
        );
        for l in LIMITS {
            limit_rejections.with_label_values(&[l]);
        }
        for l in ["proxy", "admin"] {
            connections.with_label_values(&[l]);
        }
        // Every decision exists from the start, so rates work before the first of each
        // kind; the counters are resolved once, not by label on every request.
        let by_decision = DECISIONS.map(|d| requests.with_label_values(&[d]));
        for r in ["success", "failure"] {
            reloads.with_label_values(&[r]);
        }
        for k in ["connect", "timeout", "protocol"] {
            upstream_errors.with_label_values(&[k]);
        }
        for o in [
            "issued",
            "invalid_request",
            "invalid_client",
            "invalid_scope",
            "unauthorized_client",
            "unsupported_grant_type",
            "throttled",
            "jwks",
        ] {
            token_requests.with_label_values(&[o]);
        }
        Metrics {
            registry,
            requests,
            by_decision,
            duration,
            upstream_errors,
            token_requests,
            tokens_issued,
            reloads,
            last_reload_success,
            clients,
            privileges,
            connections,
            limit_rejections,
        }
    }

    /// Count one request under its decision label.
    pub fn count_decision(&self, label: &str) {
        match DECISIONS.iter().position(|d| *d == label) {
            Some(i) => self.by_decision[i].inc(),
            None => self.requests.with_label_values(&[label]).inc(),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encode metrics");
        out
    }
}
