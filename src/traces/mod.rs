//! Traces (SPEC §15): a SERVER span per request at each door, a CLIENT span per upstream
//! exchange, W3C trace context continued or started and sent upstream. The doors call
//! [`Traces::server`] when a request arrives and [`RequestTrace::finish`] when it is
//! logged; nothing between them knows about traces. The waits a request makes on
//! outbound calls (an identity provider's keys, an egress token, the Redis of shared
//! limits) are CLIENT spans through [`waiting`], which reads the request the door put in
//! scope ([`scoped`]): no span is passed through the decision.
//!
//! No span holds a token, secret, `Authorization` value or query string: the doors give
//! the normalised path and the decision's labels only.

pub mod export;

use arc_swap::ArcSwapOption;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceId;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use std::sync::Arc;

/// The `tracing:` section as compiled (file, then the OTEL_* variables, then defaults).
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// Where spans are posted: `{otlp_endpoint}/v1/traces`, or the traces endpoint as given.
    pub endpoint: String,
    /// For requests arriving without a valid `traceparent`.
    pub sample_ratio: f64,
    pub service_name: String,
    /// `headers_file`'s lines, sent with every export.
    pub headers: Vec<(String, String)>,
}

/// Header values may be credentials: never printed.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("sample_ratio", &self.sample_ratio)
            .field("service_name", &self.service_name)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The tracer of the current `tracing` section, replaced when a reload changes it.
pub struct Traces {
    current: ArcSwapOption<Active>,
    counts: export::Counts,
}

struct Active {
    settings: Settings,
    tracer: SdkTracer,
    // Dropped with the last span of its generation: the queue then sends what is left.
    _provider: SdkTracerProvider,
}

impl Traces {
    pub fn new(counts: export::Counts) -> Traces {
        Traces {
            current: ArcSwapOption::empty(),
            counts,
        }
    }

    /// Follow the registry's `tracing` section; a tracer is rebuilt only when it changed.
    /// Its export runs on the background runtime.
    pub fn sync(&self, settings: Option<&Settings>) {
        let current = self.current.load();
        if current.as_ref().map(|a| &a.settings) == settings {
            return;
        }
        let Some(settings) = settings else {
            self.current.store(None);
            return;
        };
        let built = crate::background::handle()
            .and_then(|rt| export::provider(settings, self.counts.clone(), &rt));
        match built {
            Ok(provider) => self.current.store(Some(Arc::new(Active {
                settings: settings.clone(),
                tracer: provider.tracer("ords-guard"),
                _provider: provider,
            }))),
            Err(e) => {
                tracing::error!(target: "ords_guard", "tracing: {e}; no spans are exported");
                self.current.store(None);
            }
        }
    }

    /// A request arrives at a door: its SERVER span, continuing `headers`' valid
    /// `traceparent` (whose sampled flag decides) or starting a trace (recorded at
    /// `sample_ratio`). `None` without `tracing`: the request's trace headers then pass
    /// through like any other. A request that is not recorded never reaches the SDK: it
    /// only hands its trace on.
    pub fn server(&self, headers: &http::HeaderMap) -> Option<RequestTrace> {
        let active = self.current.load();
        let active = active.as_ref()?;
        // Only a well-formed traceparent reaches the SDK's parser (which takes short or
        // `+`-signed fields), and only it: the client's `tracestate` is forwarded as its
        // header, never held in a span (it can be kilobytes).
        let parent = match well_formed_traceparent(headers) {
            Some(v) => TraceContextPropagator::new().extract(&OnlyTraceparent(v)),
            None => Context::new(),
        };
        let sc = parent.span().span_context().clone();
        let continued = sc.is_valid();
        let recorded = match continued {
            true => sc.is_sampled(),
            false => sampled_at(active.settings.sample_ratio),
        };
        if !recorded {
            let trace_id = match continued {
                true => sc.trace_id(),
                false => RandomIdGenerator::default().new_trace_id(),
            };
            return Some(RequestTrace(Inner::Followed {
                trace_id,
                continued,
            }));
        }
        // Named when the request is decided: the route is not known yet.
        let span = active
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .start_with_context(&active.tracer, &parent);
        Some(RequestTrace(Inner::Recorded(Box::new(Recorded {
            server: parent.with_span(span),
            continued,
            upstream: None,
            active: active.clone(),
        }))))
    }
}

/// The request's one `traceparent` when it is well formed (W3C Trace Context §3.2):
/// `version-traceid-parentid-flags` in lower-case hex, 2-32-16-2, version not `ff`, ids
/// not all zero; version 00 exactly 55 bytes, a later version 55 or more with a `-` after
/// the flags. Two of them, or anything else, is malformed: a new trace starts.
fn well_formed_traceparent(headers: &http::HeaderMap) -> Option<&str> {
    let mut all = headers.get_all("traceparent").iter();
    let v = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None;
    }
    let b = v.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b.get(r)
            .is_some_and(|f| f.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
    };
    let nonzero = |r: std::ops::Range<usize>| b[r].iter().any(|&c| c != b'0');
    let shape = b.len() >= 55
        && hex(0..2)
        && b[2] == b'-'
        && hex(3..35)
        && b[35] == b'-'
        && hex(36..52)
        && b[52] == b'-'
        && hex(53..55);
    let version_fits = match &b[..2.min(b.len())] {
        b"ff" => false,
        b"00" => b.len() == 55,
        _ => b.len() == 55 || b.get(55) == Some(&b'-'),
    };
    (shape && version_fits && nonzero(3..35) && nonzero(36..52)).then_some(v)
}

/// A carrier holding only `traceparent`.
struct OnlyTraceparent<'a>(&'a str);

impl opentelemetry::propagation::Extractor for OnlyTraceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Whether a new trace is recorded, at `ratio`.
fn sampled_at(ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    // 53 random bits as a fraction in [0, 1), from the SDK's per-thread generator.
    let bits = u64::from_be_bytes(RandomIdGenerator::default().new_span_id().to_bytes()) >> 11;
    (bits as f64) / ((1u64 << 53) as f64) < ratio
}

tokio::task_local! {
    /// The recorded request this task serves, while its door has it in scope.
    static CURRENT: Parent;
}

/// A recorded request as the parent of the waits it makes.
#[derive(Clone)]
pub struct Parent {
    server: Context,
    tracer: SdkTracer,
}

/// Runs `f` with `parent` (a door's recorded request) as the parent of the waits in it.
pub async fn scoped<F: std::future::Future>(parent: Option<Parent>, f: F) -> F::Output {
    match parent {
        Some(p) => CURRENT.scope(p, f).await,
        None => f.await,
    }
}

/// Waits for `f`, an outbound call (`name`: what it is; `attributes`, built only when
/// recorded), as a CLIENT span of the request in scope, `ERROR` when `failed` says so.
/// Outside a recorded request's scope, just `f`.
pub async fn waiting<F: std::future::Future>(
    name: &'static str,
    attributes: impl FnOnce() -> Vec<KeyValue>,
    failed: impl FnOnce(&F::Output) -> bool,
    f: F,
) -> F::Output {
    let span = CURRENT
        .try_with(|p| {
            let mut span = p
                .tracer
                .span_builder(name)
                .with_kind(SpanKind::Client)
                .start_with_context(&p.tracer, &p.server);
            span.set_attributes(attributes());
            span
        })
        .ok();
    let out = f.await;
    if let Some(mut span) = span {
        if failed(&out) {
            span.set_status(Status::error(""));
        }
        span.end();
    }
    out
}

/// One request's trace, held by its door from arrival to the log line.
pub struct RequestTrace(Inner);

enum Inner {
    /// Not recorded: its trace is handed on with the sampled flag off, nothing more.
    Followed {
        trace_id: TraceId,
        continued: bool,
    },
    Recorded(Box<Recorded>),
}

struct Recorded {
    server: Context,
    /// The request came with a valid `traceparent`: its `tracestate` goes on upstream.
    continued: bool,
    upstream: Option<opentelemetry_sdk::trace::Span>,
    active: Arc<Active>,
}

/// A path as a span holds it: at most 1 KiB (a queued span must stay small whatever a
/// client sends), cut on a character boundary.
fn bounded(path: &str) -> &str {
    const MAX: usize = 1024;
    if path.len() <= MAX {
        return path;
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// The trace headers of a forwarded request.
pub struct Propagated {
    pub traceparent: String,
    /// The request continued a trace: its `tracestate` goes on unchanged. Otherwise it
    /// belongs to no trace of ours and is dropped.
    pub keep_tracestate: bool,
}

/// What a door knows of a request when it ends, for the SERVER span's name and attributes.
pub struct Facts<'a> {
    pub method: &'a str,
    /// The normalised path, never the query.
    pub path: Option<&'a str>,
    /// The deciding pattern as written in the config; `None` when none decides.
    pub route: Option<&'a str>,
    /// `oauth/token` for the token endpoint, else `route` or `public`.
    pub token_endpoint: bool,
    pub status: u16,
    pub client_addr: Option<std::net::IpAddr>,
    pub decision: &'a str,
    pub privilege: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub issuer: Option<&'a str>,
    /// The door's own attribute: `ords_guard.api` for a check, `ords_guard.egress` for an
    /// egress entry.
    pub door: Option<(&'static str, &'a str)>,
}

impl RequestTrace {
    /// Whether this request's spans are exported (and logged with their ids).
    pub fn recorded(&self) -> bool {
        matches!(self.0, Inner::Recorded(_))
    }

    /// This request as the parent of the waits it makes, when it is recorded.
    pub fn parent(&self) -> Option<Parent> {
        match &self.0 {
            Inner::Recorded(r) => Some(Parent {
                server: r.server.clone(),
                tracer: r.active.tracer.clone(),
            }),
            Inner::Followed { .. } => None,
        }
    }

    /// The SERVER span's trace and span ids, lowercase hex, for a recorded request's
    /// access line.
    pub fn ids(&self) -> Option<(String, String)> {
        let Inner::Recorded(r) = &self.0 else {
            return None;
        };
        let span = r.server.span();
        let sc = span.span_context();
        Some((sc.trace_id().to_string(), sc.span_id().to_string()))
    }

    /// The `traceparent` an authz check's 200 answer hands the proxy in front, for the
    /// request it forwards (issue #34): the check's SERVER span as the parent when it is
    /// recorded; the trace id with a fresh parent-id and the sampled flag off otherwise.
    pub fn answer_traceparent(&self) -> String {
        match &self.0 {
            Inner::Followed { trace_id, .. } => {
                let hop = RandomIdGenerator::default().new_span_id();
                format!("00-{trace_id}-{hop}-00")
            }
            Inner::Recorded(r) => {
                let span = r.server.span();
                let sc = span.span_context();
                format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
            }
        }
    }

    /// The upstream exchange begins: its CLIENT span, and the `traceparent` the forwarded
    /// request carries instead of the client's, naming that span as the parent.
    pub fn upstream(&mut self, host: &str, port: u16) -> Propagated {
        let r = match &mut self.0 {
            Inner::Followed {
                trace_id,
                continued,
            } => {
                // The parent-id a recorded CLIENT span would have had; nothing recorded.
                let hop = RandomIdGenerator::default().new_span_id();
                return Propagated {
                    traceparent: format!("00-{trace_id}-{hop}-00"),
                    keep_tracestate: *continued,
                };
            }
            Inner::Recorded(r) => r,
        };
        let tracer = &r.active.tracer;
        let mut span = tracer
            .span_builder("upstream")
            .with_kind(SpanKind::Client)
            .start_with_context(tracer, &r.server);
        span.set_attributes([
            KeyValue::new("server.address", host.to_string()),
            KeyValue::new("server.port", i64::from(port)),
        ]);
        // What the W3C propagator would write, without its map: a recorded span is sampled.
        let sc = span.span_context();
        let traceparent = format!("00-{}-{}-01", sc.trace_id(), sc.span_id());
        let propagated = Propagated {
            traceparent,
            keep_tracestate: r.continued,
        };
        // A retry (pingora asks again) ends the previous attempt's span.
        if let Some(mut previous) = r.upstream.replace(span) {
            previous.set_status(Status::error("retried"));
            previous.end();
        }
        propagated
    }

    /// The upstream answered `status`.
    pub fn upstream_answered(&mut self, status: u16) {
        if let Inner::Recorded(r) = &mut self.0 {
            r.answered(status);
        }
    }

    /// The request is done: a recorded request's spans get their names and attributes and
    /// end. `failed`: the upstream exchange broke off (its CLIENT span is then an error).
    pub fn finish(self, f: &Facts<'_>, failed: Option<&str>) {
        if let Inner::Recorded(r) = self.0 {
            r.finish(f, failed);
        }
    }
}

impl Recorded {
    fn answered(&mut self, status: u16) {
        if let Some(span) = &mut self.upstream {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                span.set_status(Status::error(""));
            }
        }
    }

    fn finish(mut self, f: &Facts<'_>, failed: Option<&str>) {
        if let Some(mut span) = self.upstream.take() {
            if let Some(why) = failed {
                span.set_status(Status::error(why.to_string()));
            }
            span.end();
        }
        let span = self.server.span();
        let route = if f.token_endpoint {
            "oauth/token"
        } else {
            f.route.unwrap_or("public")
        };
        span.update_name(format!("{} {route}", f.method));
        let mut attributes = vec![
            KeyValue::new("http.request.method", f.method.to_string()),
            KeyValue::new("http.response.status_code", i64::from(f.status)),
            KeyValue::new("ords_guard.decision", f.decision.to_string()),
        ];
        let optional = [
            ("url.path", f.path.map(bounded)),
            ("http.route", f.route.filter(|_| !f.token_endpoint)),
            ("ords_guard.privilege", f.privilege),
            ("ords_guard.client_id", f.client_id),
            ("ords_guard.issuer", f.issuer),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                attributes.push(KeyValue::new(k, v.to_string()));
            }
        }
        if let Some(addr) = f.client_addr {
            attributes.push(KeyValue::new("client.address", addr.to_string()));
        }
        if let Some((k, v)) = f.door {
            attributes.push(KeyValue::new(k, v.to_string()));
        }
        span.set_attributes(attributes);
        if f.status >= 500 {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_traceparent_is_continued() {
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        let p = "00f067aa0ba902b7";
        let one = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("traceparent", v.parse().unwrap());
            well_formed_traceparent(&h).is_some()
        };
        assert!(one(&format!("00-{t}-{p}-01")));
        assert!(one(&format!("00-{t}-{p}-03")));
        assert!(one(&format!("01-{t}-{p}-01-future")));
        assert!(one(&format!("01-{t}-{p}-01")));
        for bad in [
            "0-1-1-1".to_string(),
            format!("00-+{}-{p}-01", &t[1..]),
            format!("00-{}-{p}-01", t.to_uppercase()),
            format!("ff-{t}-{p}-01"),
            format!("00-{t}-{p}-01-extra"),
            format!("01-{t}-{p}-01x"),
            format!("00-{}-{p}-01", "0".repeat(32)),
            format!("00-{t}-{}-01", "0".repeat(16)),
            format!("00-{t}-{p}-1"),
            format!("00-{t}-{p}"),
        ] {
            assert!(!one(&bad), "{bad}");
        }
        let mut two = http::HeaderMap::new();
        two.append("traceparent", format!("00-{t}-{p}-01").parse().unwrap());
        two.append("traceparent", format!("00-{t}-{p}-01").parse().unwrap());
        assert!(well_formed_traceparent(&two).is_none());
        assert_eq!(bounded(&"é".repeat(600)).len(), 1024);
    }

    #[test]
    fn new_traces_are_recorded_at_the_ratio() {
        assert!((0..1000).all(|_| !sampled_at(0.0)));
        assert!((0..1000).all(|_| sampled_at(1.0)));
        let hits = (0..20_000).filter(|_| sampled_at(0.25)).count();
        assert!((4_000..6_000).contains(&hits), "{hits} of 20,000 at 0.25");
    }
}
