//! RFC 9457 problem documents: the body of every answer ords-guard writes itself (refusals,
//! limits, its own endpoints' 404s).

/// A problem document with its `status`, `title` and `detail`.
pub fn problem(status: u16, title: &str, detail: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"type": "about:blank", "title": title, "status": status, "detail": detail})).expect("json")
}
