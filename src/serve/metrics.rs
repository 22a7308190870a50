//! Prometheus metrics (SPEC §5). Labels carry only bounded values: decisions, outcomes,
//! error kinds, reload results and registered client ids — never paths, tokens or secrets.

use crate::tokens::jwks_fetch::JwksMetrics;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The `decision` label values of `ords_guard_requests_total` (`Decision::label`, and
/// `bad_request` for refused paths).
pub const DECISIONS: [&str; 10] = [
    "forwarded_public",
    "forwarded",
    "unauthenticated",
    "invalid_token",
    "forbidden",
    "bad_request",
    "issuer_unavailable",
    "report_only",
    "rate_limited",
    "rate_limit_unavailable",
];

/// The `kind` label values of `ords_guard_h2_abuse_total` (SPEC §17).
pub const H2_ABUSE: [&str; 4] = [
    "rapid_reset",
    "continuation_flood",
    "hpack",
    "invalid_frames",
];

/// The `limit` label values of `ords_guard_limit_rejections_total` (the connection guard's refusals,
/// [`REQUEST_TOTAL_TIMEOUT`], and the argon2 pool's admission refusals).
pub const LIMITS: [&str; 7] = [
    "max_connections",
    "max_header_bytes",
    "max_headers",
    "client_header_timeout",
    REQUEST_TOTAL_TIMEOUT,
    crate::clients::secret::pool::BUDGET,
    crate::clients::secret::pool::QUEUE,
];
/// A request that outlived `timeouts.request_total_ms` (answered 408/504, or cut).
pub const REQUEST_TOTAL_TIMEOUT: &str = "request_total_timeout";

/// A one-label counter family whose values are known up front: every series exists from
/// the start (so rates and absence alerts work before the first event), and each is
/// resolved once rather than looked up by label on every event.
pub struct KnownLabels<const N: usize> {
    family: IntCounterVec,
    values: [&'static str; N],
    series: [IntCounter; N],
}

impl<const N: usize> KnownLabels<N> {
    fn new(family: IntCounterVec, values: [&'static str; N]) -> Self {
        let series = values.map(|v| family.with_label_values(&[v]));
        KnownLabels {
            family,
            values,
            series,
        }
    }

    /// Count one event under `value` (a value not declared up front still counts).
    pub fn inc(&self, value: &str) {
        match self.values.iter().position(|v| *v == value) {
            Some(i) => self.series[i].inc(),
            None => self.family.with_label_values(&[value]).inc(),
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: KnownLabels<10>,
    /// Requests refused by a rate limit, by limit (SPEC §13).
    pub rate_limited: IntCounterVec,
    /// Rate-limit store failures and timeouts (SPEC §13).
    pub rate_limit_store_errors: IntCounter,
    pub rate_limit_store_duration: Histogram,
    /// Spans the collector accepted, and spans dropped (queue full, collector down; SPEC §15).
    pub traces: crate::traces::export::Counts,
    /// What privileges in `mode: report` would have refused, by privilege and `would`
    /// (SPEC §11).
    pub report_only: IntCounterVec,
    pub duration: Histogram,
    pub upstream_errors: KnownLabels<4>,
    /// Requests waiting for one of `limits.max_upstream_connections`.
    pub upstream_waiting: IntGauge,
    pub token_requests: KnownLabels<13>,
    pub tokens_issued: IntCounterVec,
    pub reloads: KnownLabels<2>,
    pub last_reload_success: Gauge,
    pub clients: IntGauge,
    pub privileges: IntGauge,
    pub connections: IntGaugeVec,
    pub limit_rejections: KnownLabels<7>,
    /// HTTP/2 connections closed for abuse (SPEC §17), by kind.
    pub h2_abuse: KnownLabels<4>,
    /// Per `issuers[]` name (SPEC §9).
    pub jwks: JwksMetrics,
    /// Per `egress[]` name (SPEC §10).
    pub egress: EgressMetrics,
    /// The authz checks (SPEC §14), by API and decision.
    pub authz_checks: IntCounterVec,
    pub authz_duration: Histogram,
}

/// The `api` label values of `ords_guard_authz_checks_total` (SPEC §14).
pub const AUTHZ_APIS: [&str; 4] = [
    "forward_auth",
    "auth_request",
    "ext_authz_http",
    "ext_authz_grpc",
];

/// The egress families (SPEC §10).
#[derive(Clone)]
pub struct EgressMetrics {
    pub requests: IntCounterVec,
    pub token_fetches: IntCounterVec,
    pub token_expiry: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let register = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("register");
        };
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            register(Box::new(c.clone()));
            c
        };
        let counter = |name: &str, help: &str, label: &str| counters(name, help, &[label]);
        let int_gauges = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
            register(Box::new(g.clone()));
            g
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("metric");
            register(Box::new(g.clone()));
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("metric");
            register(Box::new(g.clone()));
            g
        };
        let requests = KnownLabels::new(
            counter(
                "ords_guard_requests_total",
                "Requests on the proxy port, by access decision.",
                "decision",
            ),
            DECISIONS,
        );
        let upstream_errors = KnownLabels::new(
            counter(
                "ords_guard_upstream_errors_total",
                "Requests that failed to reach the upstream or to get its answer, by kind.",
                "kind",
            ),
            ["connect", "timeout", "protocol", "connection_limit"],
        );
        let upstream_waiting = gauge(
            "ords_guard_upstream_requests_waiting",
            "Requests waiting for a free upstream connection (limits.max_upstream_connections).",
        );
        let token_requests = KnownLabels::new(
            counter(
                "ords_guard_token_requests_total",
                "Requests to the token endpoint, by outcome.",
                "outcome",
            ),
            [
                "issued",
                "invalid_request",
                "invalid_client",
                "invalid_scope",
                "unauthorized_client",
                "unsupported_grant_type",
                "throttled",
                "overloaded",
                "jwks",
                "metadata",
                "introspection",
                "revoked",
                "not_revoked",
            ],
        );
        let tokens_issued = counter(
            "ords_guard_tokens_issued_total",
            "Access tokens issued, by client id.",
            "client",
        );
        let reloads = KnownLabels::new(
            counter(
                "ords_guard_config_reloads_total",
                "Config reload attempts, by result.",
                "result",
            ),
            ["success", "failure"],
        );
        let limit_rejections = KnownLabels::new(
            counter(
                "ords_guard_limit_rejections_total",
                "Connections and requests refused or cut by a limit (limits, timeouts), by limit.",
                "limit",
            ),
            LIMITS,
        );
        let h2_abuse = KnownLabels::new(
            counter(
                "ords_guard_h2_abuse_total",
                "HTTP/2 connections answered with GOAWAY and closed for abuse, by kind.",
                "kind",
            ),
            H2_ABUSE,
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
        register(Box::new(duration.clone()));
        let authz_checks = counters(
            "ords_guard_authz_checks_total",
            "Checks asked by a proxy in front (SPEC §14), by API and decision.",
            &["api", "decision"],
        );
        // Every API and decision from the start, so rates and absence alerts work at once.
        for api in AUTHZ_APIS {
            for d in DECISIONS.iter().chain(&["untrusted_peer"]) {
                authz_checks.with_label_values(&[api, d]);
            }
        }
        let authz_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ords_guard_authz_check_duration_seconds",
                "Time to answer one authz check, in seconds.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
        )
        .expect("metric");
        register(Box::new(authz_duration.clone()));
        let last_reload_success = Gauge::new(
            "ords_guard_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )
        .expect("metric");
        register(Box::new(last_reload_success.clone()));
        let clients = gauge(
            "ords_guard_clients",
            "Registered clients in the current registry.",
        );
        let privileges = gauge(
            "ords_guard_privileges",
            "Privileges in the current registry.",
        );
        let connections = int_gauges(
            "ords_guard_connections",
            "Open client connections, by listener (proxy, admin, egress).",
            &["listener"],
        );
        for l in ["proxy", "admin", crate::serve::conn::EGRESS_LISTENER] {
            connections.with_label_values(&[l]);
        }
        let jwks_fetches = counters(
            "ords_guard_jwks_fetches_total",
            "Fetches of identity providers' JWK Sets, by issuer and result.",
            &["issuer", "result"],
        );
        let jwks_keys = int_gauges(
            "ords_guard_jwks_keys",
            "Usable keys held now for each identity provider.",
            &["issuer"],
        );
        let jwks_last_success = gauges(
            "ords_guard_jwks_last_success_timestamp_seconds",
            "Unix time each identity provider's keys were last fetched (or read) successfully.",
            &["issuer"],
        );
        let rate_limited = counter(
            "ords_guard_rate_limited_total",
            "Requests refused with 429 by a rate limit, by limit.",
            "limit",
        );
        let rate_limit_store_errors = IntCounter::new(
            "ords_guard_rate_limit_store_errors_total",
            "Rate-limit checks the shared store failed or did not answer in time.",
        )
        .expect("metric");
        register(Box::new(rate_limit_store_errors.clone()));
        // The log writer counts its drops; it knows nothing of the registry.
        register(Box::new(Scraped::new(
            "ords_guard_log_lines_dropped_total",
            "Log lines (access log included) dropped because stdout did not keep up.",
            true,
            crate::logs::dropped_lines,
        )));
        register(Box::new(
            crate::tokens::introspector::INTROSPECTIONS.clone(),
        ));
        register(Box::new(Scraped::new(
            "ords_guard_upstream_reuse_misses_total",
            "Pooled upstream connections pingora could not take (\"failed to acquire reusable stream\"); a new connection was opened instead.",
            true,
            crate::logs::upstream_reuse_misses,
        )));
        register(Box::new(Scraped::new(
            "ords_guard_revocations",
            "Tokens revoked at /oauth/revoke and not yet expired (this process's view).",
            false,
            live_revocations,
        )));
        let plain_counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("metric");
            register(Box::new(c.clone()));
            c
        };
        let traces = crate::traces::export::Counts {
            exported: plain_counter(
                "ords_guard_trace_spans_exported_total",
                "Spans the OTLP collector accepted.",
            ),
            dropped: plain_counter(
                "ords_guard_trace_spans_dropped_total",
                "Spans dropped: the export queue was full, or the collector failed or did not answer in time.",
            ),
        };
        let rate_limit_store_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ords_guard_rate_limit_store_duration_seconds",
                "Round trips to the shared rate-limit store, in seconds.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25,
            ]),
        )
        .expect("metric");
        register(Box::new(rate_limit_store_duration.clone()));
        let report_only = counters(
            "ords_guard_report_only_total",
            "Requests a privilege in mode: report would have refused and that were forwarded, by privilege and would-be refusal (unauthenticated, invalid_token, forbidden).",
            &["privilege", "would"],
        );
        let egress_requests = counters("ords_guard_egress_requests_total", "Requests on egress listeners, by entry and outcome (forwarded, retried, token_unavailable, upstream_error).", &["egress", "outcome"]);
        let egress_token_fetches = counters(
            "ords_guard_egress_token_fetches_total",
            "Token requests of egress entries, by entry and result.",
            &["egress", "result"],
        );
        let egress_token_expiry = gauges(
            "ords_guard_egress_token_expiry_timestamp_seconds",
            "Unix time the token each egress entry holds expires.",
            &["egress"],
        );
        Metrics {
            egress: EgressMetrics {
                requests: egress_requests,
                token_fetches: egress_token_fetches,
                token_expiry: egress_token_expiry,
            },
            jwks: JwksMetrics {
                fetches: jwks_fetches,
                keys: jwks_keys,
                last_success: jwks_last_success,
            },
            registry,
            requests,
            rate_limited,
            rate_limit_store_errors,
            rate_limit_store_duration,
            traces,
            report_only,
            duration,
            upstream_errors,
            upstream_waiting,
            token_requests,
            tokens_issued,
            reloads,
            last_reload_success,
            clients,
            privileges,
            connections,
            limit_rejections,
            h2_abuse,
            authz_checks,
            authz_duration,
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

/// A figure kept outside the registry, read at each scrape: a counter or a gauge.
struct Scraped {
    desc: prometheus::core::Desc,
    counter: bool,
    read: fn() -> u64,
}

impl Scraped {
    fn new(name: &str, help: &str, counter: bool, read: fn() -> u64) -> Scraped {
        let desc =
            prometheus::core::Desc::new(name.into(), help.into(), vec![], Default::default())
                .expect("metric");
        Scraped {
            desc,
            counter,
            read,
        }
    }
}

impl prometheus::core::Collector for Scraped {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let (name, help) = (self.desc.fq_name.clone(), self.desc.help.clone());
        let value = (self.read)();
        if self.counter {
            let c = IntCounter::new(name, help).expect("metric");
            c.inc_by(value);
            c.collect()
        } else {
            let g = IntGauge::new(name, help).expect("metric");
            g.set(i64::try_from(value).unwrap_or(i64::MAX));
            g.collect()
        }
    }
}

/// `ords_guard_revocations` (SPEC §16): swept at the scrape too, so the figure drops as
/// tokens expire without new revocations.
fn live_revocations() -> u64 {
    let revoked = &crate::tokens::revoked::REVOKED;
    if !revoked.is_empty() {
        revoked.sweep(crate::tokens::token::now());
    }
    revoked.len() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn dropped_log_lines_are_exposed_as_a_counter() {
        let text = String::from_utf8(super::Metrics::new().render()).unwrap();
        assert!(
            text.contains("# TYPE ords_guard_log_lines_dropped_total counter\nords_guard_log_lines_dropped_total 0\n"),
            "{text}"
        );
    }
}
