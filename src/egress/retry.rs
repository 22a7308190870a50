//! Whether a request that got 401 with a token the remote no longer takes is sent again
//! with a fresh one (SPEC §10): once, for idempotent methods or an `Idempotency-Key`, and
//! only when its body was small enough to keep.

/// Bodies up to this size are kept so they can be sent twice (chunked ones included).
pub const MAX_RETRY_BODY: usize = 64 * 1024;

/// `retry_on_401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn401 {
    Idempotent,
    Never,
}

/// What is known of a request when its answer comes back.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    pub method: &'a str,
    pub idempotency_key: bool,
    /// The whole body was kept (at most [`MAX_RETRY_BODY`]); `false` once it outgrew that.
    pub body_kept: bool,
}

/// Whether a 401 to `sent` may be answered by sending it again with a new token.
pub fn may_retry(policy: RetryOn401, sent: Sent<'_>) -> bool {
    let idempotent = matches!(sent.method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE");
    policy == RetryOn401::Idempotent && (idempotent || sent.idempotency_key) && sent.body_kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_requests_with_a_kept_body_are_sent_twice() {
        let sent = |method, idempotency_key, body_kept| Sent {
            method,
            idempotency_key,
            body_kept,
        };
        let idem = RetryOn401::Idempotent;
        for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"] {
            assert!(may_retry(idem, sent(m, false, true)), "{m}");
            assert!(!may_retry(RetryOn401::Never, sent(m, false, true)), "{m}");
        }
        for m in ["POST", "PATCH", "get", "TRACE"] {
            assert!(!may_retry(idem, sent(m, false, true)), "{m}");
            assert!(
                may_retry(idem, sent(m, true, true)),
                "{m} with Idempotency-Key"
            );
        }
        assert!(
            !may_retry(idem, sent("PUT", false, false)),
            "a body too big to keep"
        );
        assert!(!may_retry(idem, sent("POST", true, false)));
    }
}
