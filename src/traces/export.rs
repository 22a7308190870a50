//! Export (SPEC §15): spans that ended go into a bounded queue without waiting; a task on
//! the background runtime sends them as OTLP/HTTP protobuf, at most 512 at a time or every
//! 5 s, each export bounded to 10 s. A full queue or a failed export drops spans and counts
//! them: a request never waits for the collector. The SDK's own batch processor keeps its
//! drop count private and runs a thread of its own, hence this processor.

use super::Settings;
use opentelemetry::Context;
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Spans waiting for export; beyond it they are dropped.
pub const QUEUE: usize = 2048;
/// Spans per export.
pub const BATCH: usize = 512;
/// The longest a span waits for a batch to fill.
pub const DELAY: Duration = Duration::from_secs(5);
/// One export, answer included.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The collector's answer is read no further (it says little: a partial success at most).
const MAX_ANSWER: usize = 64 * 1024;

/// `ords_guard_trace_spans_exported_total` and `..._dropped_total`.
#[derive(Clone, Debug)]
pub struct Counts {
    pub exported: IntCounter,
    pub dropped: IntCounter,
}

/// Counters registered nowhere (fuzzing, unit tests).
impl Default for Counts {
    fn default() -> Counts {
        let counter = |name: &str| IntCounter::new(name, name).expect("a valid name");
        Counts {
            exported: counter("exported"),
            dropped: counter("dropped"),
        }
    }
}

/// The OTLP exporter's HTTP client: the bounded outbound client (system roots, no
/// redirects, deadline and answer size capped).
#[derive(Debug, Clone)]
struct Outbound(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Outbound {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let builder = reqwest::RequestBuilder::from_parts(self.0.clone(), request);
        let answer = crate::outbound::send(builder, MAX_ANSWER, EXPORT_TIMEOUT).await?;
        let mut response = http::Response::builder().status(answer.status);
        if let Some(h) = response.headers_mut() {
            *h = answer.headers;
        }
        Ok(response.body(Bytes::from(answer.body))?)
    }
}

/// A tracer provider exporting to `settings.endpoint` on `runtime`.
pub fn provider(
    settings: &Settings,
    counts: Counts,
    runtime: &tokio::runtime::Handle,
) -> Result<SdkTracerProvider, String> {
    let trust = crate::outbound::Tls::trusting(crate::outbound::Trust::System);
    let client = crate::outbound::client(&trust, EXPORT_TIMEOUT)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        // Used as is: `settings` already ends in /v1/traces where it should.
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(settings.headers.iter().cloned().collect())
        // A retry would sleep on the runtime's thread; the next batch is the retry.
        .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
        .with_http_client(Outbound(client))
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let resource = Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        // `Traces::server` samples before the SDK is asked: what reaches it is recorded.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource.clone())
        .with_span_processor(Queue::spawn(exporter, &resource, counts, runtime))
        .build())
}

/// The bounded queue in front of the exporter. A request's thread appends under a short
/// lock and wakes the exporting task only when a batch is full; otherwise it sends what
/// waits every 5 s. Waking it for every span (a channel) cost a futex call and a context
/// switch per span, most of SPEC §15's cost budget.
#[derive(Debug)]
struct Queue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    spans: Mutex<Vec<SpanData>>,
    /// A batch is full, or the provider stops.
    ready: Notify,
    stop: AtomicBool,
    dropped: IntCounter,
}

impl Shared {
    /// Up to a batch of what waits, oldest first.
    fn take(&self) -> Vec<SpanData> {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let n = spans.len().min(BATCH);
        if n == spans.len() {
            std::mem::take(&mut *spans)
        } else {
            spans.drain(..n).collect()
        }
    }
}

impl Queue {
    fn spawn<E: SpanExporter + 'static>(
        mut exporter: E,
        resource: &Resource,
        counts: Counts,
        runtime: &tokio::runtime::Handle,
    ) -> Queue {
        // The OTLP exporter encodes the resource it is given here, not the provider's.
        exporter.set_resource(resource);
        let shared = Arc::new(Shared {
            spans: Mutex::new(Vec::new()),
            ready: Notify::new(),
            stop: AtomicBool::new(false),
            dropped: counts.dropped.clone(),
        });
        let queue = shared.clone();
        runtime.spawn(async move {
            loop {
                // A full batch wakes the task; otherwise what waits goes every DELAY.
                let _ = tokio::time::timeout(DELAY, queue.ready.notified()).await;
                // `last`: the provider is gone (a reload replaced it, or shutdown): send
                // what is left, then stop.
                let last = queue.stop.load(Ordering::Acquire);
                loop {
                    let batch = queue.take();
                    if batch.is_empty() {
                        break;
                    }
                    let n = batch.len() as u64;
                    let full = batch.len() == BATCH;
                    match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await {
                        Ok(Ok(())) => counts.exported.inc_by(n),
                        _ => counts.dropped.inc_by(n),
                    }
                    if !full && !last {
                        break;
                    }
                }
                if last {
                    let _ = exporter.shutdown();
                    return;
                }
            }
        });
        Queue { shared }
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let shared = &self.shared;
        let mut spans = shared.spans.lock().unwrap_or_else(|e| e.into_inner());
        // Full, or the provider stopped: dropped, never waited for.
        if spans.len() >= QUEUE || shared.stop.load(Ordering::Relaxed) {
            drop(spans);
            shared.dropped.inc();
            return;
        }
        if spans.capacity() == 0 {
            spans.reserve(BATCH);
        }
        spans.push(span);
        let full = spans.len() == BATCH;
        drop(spans);
        if full {
            shared.ready.notify_one();
        }
    }

    /// Never blocks a request's thread: the queue flushes on its own schedule.
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.ready.notify_one();
        Ok(())
    }
}
