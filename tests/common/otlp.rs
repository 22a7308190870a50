//! An OTLP/HTTP receiver (SPEC §15) on an ephemeral loopback port: it decodes every export
//! with the official OpenTelemetry protobuf messages (`opentelemetry-proto`), keeps the raw
//! bytes for secret scans, and answers 200, 503, or never.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers an export.
pub const ANSWER_OK: u16 = 200;
pub const ANSWER_UNAVAILABLE: u16 = 503;
/// Never answers (the export must time out on its own).
pub const ANSWER_HANG: u16 = 0;

/// One export as received.
#[derive(Clone, Debug)]
pub struct Export {
    pub path: String,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
    pub request: ExportTraceServiceRequest,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub exports: Arc<Mutex<Vec<Export>>>,
    answer: Arc<AtomicU16>,
}

/// A span as received, with its resource's `service.name`.
#[derive(Clone, Debug)]
pub struct Got {
    pub service: String,
    pub span: Span,
}

impl Got {
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An attribute's value as text (strings as they are, numbers in decimal).
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

impl Receiver {
    pub async fn start(answer: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let exports = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(AtomicU16::new(answer));
        let (log, how) = (exports.clone(), answer.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, how) = (log.clone(), how.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (log, how) = (log.clone(), how.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let headers: Vec<(String, String)> = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            let raw = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                            let answer = how.load(Ordering::Acquire);
                            if answer == ANSWER_HANG {
                                std::future::pending::<()>().await;
                            }
                            let request = ExportTraceServiceRequest::decode(raw.as_slice())
                                .expect("an OTLP ExportTraceServiceRequest");
                            if answer == ANSWER_OK {
                                log.lock().unwrap().push(Export {
                                    path,
                                    content_type,
                                    headers,
                                    raw,
                                    request,
                                });
                            }
                            let mut r = hyper::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = hyper::StatusCode::from_u16(answer).unwrap();
                            Ok::<_, hyper::Error>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            exports,
            answer,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn answer(&self, status: u16) {
        self.answer.store(status, Ordering::Release);
    }

    /// Every span accepted so far.
    pub fn spans(&self) -> Vec<Got> {
        let exports = self.exports.lock().unwrap();
        let mut out = Vec::new();
        for e in exports.iter() {
            for rs in &e.request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| attr(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(Got {
                            service: service.clone(),
                            span: s.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Until a span satisfies `want` (bounded: a batch leaves within 5 s).
    pub async fn span(&self, what: &str, want: impl Fn(&Got) -> bool) -> Got {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| want(s)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no span {what} within 20 s; got {:#?}",
                self.spans()
                    .iter()
                    .map(|s| (&s.span.name, s.span.kind))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every byte the collector received.
    pub fn raw(&self) -> Vec<u8> {
        self.exports
            .lock()
            .unwrap()
            .iter()
            .flat_map(|e| e.raw.clone())
            .collect()
    }
}
