//! The admin listener (SPEC §5): `/metrics`, `/healthz`, `/readyz`. Never on the proxy port.

use crate::serve::state::Guard;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct Admin {
    pub guard: Arc<Guard>,
}

fn text(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .body(body)
        .expect("static response")
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let _ = session.drain_request_body().await;
        match path.as_str() {
            "/metrics" => text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.guard.metrics.render(),
            ),
            "/healthz" => text(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.guard.is_ready() => text(200, "text/plain", b"ready\n".to_vec()),
            "/readyz" => text(503, "text/plain", b"not ready\n".to_vec()),
            _ => text(
                404,
                "text/plain",
                b"not found: try /metrics, /healthz or /readyz\n".to_vec(),
            ),
        }
    }
}
