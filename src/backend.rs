//! The built-in demo backend (`ords-guard demo`): a stand-in for a legacy REST service that
//! answers every request with what it received, so the identity headers ords-guard adds can
//! be seen.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub struct EchoBackend;

#[async_trait]
impl ServeHttp for EchoBackend {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let _ = session.drain_request_body().await;
        let req = session.req_header();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let body = serde_json::json!({
            "service": "ords-guard demo backend",
            "method": req.method.as_str(),
            "path": String::from_utf8_lossy(req.raw_path()),
            "headers": headers,
        });
        let mut body = serde_json::to_vec_pretty(&body).expect("json");
        body.push(b'\n');
        Response::builder()
            .status(200)
            .header("Content-Type", "application/json")
            .header("Content-Length", body.len())
            .body(body)
            .expect("static response")
    }
}
