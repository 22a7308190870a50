//! Fetching identity providers' JWK Sets (SPEC §9): one task per `jwks_url` entry, on the
//! background runtime, so the proxy never waits for a fetch it did not ask for. Each task fetches at once, then on the
//! schedule of `keycell` (every `refresh_seconds`, shortened by Cache-Control max-age, a
//! backoff while failing), and early when woken (a reload, an unknown `kid`).
//!
//! A fetch is one GET through `outbound`: 5 s for the whole exchange, 1 MiB, no redirects,
//! TLS verified. A failure keeps the last good keys; so does a set with no usable key.

use super::jwks::{KeySet, MAX_BYTES};
use super::keycell::{self, KeyCell};
use crate::outbound::{self, Trust};
use jsonwebtoken::Algorithm;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The bound on one fetch, connect to last body byte (SPEC §9).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The metric families a fetch updates (registered by `metrics`).
#[derive(Clone)]
pub struct JwksMetrics {
    pub fetches: IntCounterVec,
    pub keys: IntGaugeVec,
    pub last_success: GaugeVec,
}

/// An issuer whose keys are fetched: what its fetches need, and the cell they fill.
#[derive(Clone)]
pub struct Source {
    pub cell: Arc<KeyCell>,
    pub issuer: String,
    pub url: String,
    pub trust: Trust,
    pub algorithms: Vec<Algorithm>,
    pub refresh: Duration,
}

struct Running {
    source: Source,
    task: tokio::task::AbortHandle,
}

/// The fetch tasks of the current registry generation.
pub struct Fetcher {
    metrics: JwksMetrics,
    running: Mutex<Vec<Running>>,
}

/// A good answer: the keys, and how soon the provider wants them fetched again.
struct Fetched {
    keys: KeySet,
    max_age: Option<Duration>,
}

impl Fetcher {
    pub fn new(metrics: JwksMetrics) -> Fetcher {
        Fetcher {
            metrics,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Fetch `sources` from now on (at start and after every reload): a task for each
    /// that has none, a fetch now for each kept one, and the tasks of sources gone (or
    /// changed) stopped.
    pub fn sync(&self, sources: Vec<Source>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::new();
        for source in sources {
            let same = running.iter().position(|r| {
                Arc::ptr_eq(&r.source.cell, &source.cell)
                    && r.source.url == source.url
                    && r.source.trust == source.trust
                    && r.source.refresh == source.refresh
            });
            if let Some(i) = same {
                let r = running.swap_remove(i);
                r.source.cell.wake();
                kept.push(r);
                continue;
            }
            let issuer = source.issuer.clone();
            match self.spawn(source.clone()) {
                Ok(task) => kept.push(Running { source, task }),
                Err(e) => {
                    tracing::error!(target: "ords_guard::jwks", issuer, "{e}; its tokens get 503 until a restart")
                }
            }
        }
        for gone in running.drain(..) {
            gone.task.abort();
        }
        *running = kept;
    }

    fn spawn(&self, source: Source) -> Result<tokio::task::AbortHandle, String> {
        let client = outbound::client(
            &outbound::Tls::trusting(source.trust.clone()),
            FETCH_TIMEOUT,
        )?;
        let metrics = self.metrics.clone();
        let task = crate::background::handle()?.spawn(run(source, client, metrics));
        Ok(task.abort_handle())
    }
}

/// One fetch of `source`'s keys into its cell, outside the fetcher (`ords-guard explain`):
/// the number of usable keys, or why there are none.
pub async fn fetch_once(source: &Source) -> Result<usize, String> {
    let client = outbound::client(
        &outbound::Tls::trusting(source.trust.clone()),
        FETCH_TIMEOUT,
    )?;
    source.cell.fetch_started();
    let got = fetch(&client, &source.url, &source.algorithms).await;
    let n = got.as_ref().map_or(0, |f| f.keys.len());
    let err = got.as_ref().err().cloned();
    source.cell.fetch_finished(got.ok().map(|f| f.keys));
    err.map_or(Ok(n), Err)
}

/// One issuer's fetches, for as long as its entry lasts.
async fn run(source: Source, client: reqwest::Client, m: JwksMetrics) {
    let cell = &source.cell;
    let issuer = source.issuer.as_str();
    let fetches = |result: &str| m.fetches.with_label_values(&[issuer, result]);
    fetches("success");
    fetches("failure");
    // A new entry holds nothing yet; a kept one (its source changed) what it had.
    m.keys
        .with_label_values(&[issuer])
        .set(cell.current().map_or(0, |k| k.len() as i64));
    let mut failures = 0u32;
    let mut held: Option<Vec<String>> = cell
        .current()
        .map(|k| k.kids().into_iter().map(String::from).collect());
    loop {
        cell.fetch_started();
        let wait = match fetch(&client, &source.url, &source.algorithms).await {
            // Logged before counted: whoever sees the count can read the line.
            Ok(Fetched { keys, max_age }) => {
                let kids: Vec<String> = keys.kids().into_iter().map(String::from).collect();
                let wait = keycell::after_success(source.refresh, max_age);
                if held.as_ref() != Some(&kids) || failures > 0 {
                    tracing::info!(target: "ords_guard::jwks", issuer, url = %source.url, keys = keys.len(), kids = %kids.join(" "), next_fetch_s = wait.as_secs(), "identity provider keys fetched");
                    for why in &keys.skipped {
                        tracing::warn!(target: "ords_guard::jwks", issuer, "{why}; skipped");
                    }
                }
                held = Some(kids);
                failures = 0;
                fetches("success").inc();
                m.keys.with_label_values(&[issuer]).set(keys.len() as i64);
                m.last_success
                    .with_label_values(&[issuer])
                    .set(crate::tokens::token::now() as f64);
                cell.fetch_finished(Some(keys));
                wait
            }
            Err(why) => {
                failures = failures.saturating_add(1);
                let wait = keycell::after_failure(failures, source.refresh, rand::random());
                let kept = if held.is_some() {
                    "keeping the last good keys"
                } else {
                    "its tokens get 503 until a fetch succeeds"
                };
                tracing::warn!(target: "ords_guard::jwks", issuer, url = %source.url, failures, retry_in_ms = wait.as_millis() as u64, "cannot fetch the identity provider's keys: {why}; {kept}");
                fetches("failure").inc();
                cell.fetch_finished(None);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cell.woken() => {}
        }
    }
}

/// One GET of a JWK Set, checked: 200, within the bounds, at least one usable key.
async fn fetch(client: &reqwest::Client, url: &str, algs: &[Algorithm]) -> Result<Fetched, String> {
    let req = client.get(url).header(
        http::header::ACCEPT,
        "application/jwk-set+json, application/json",
    );
    let answer = outbound::send(req, MAX_BYTES, FETCH_TIMEOUT)
        .await
        .map_err(|e| match e {
            outbound::FetchError::Transport(t) if t.contains("certificate") => format!(
                "{t} (is ca_file the CA that signed the provider's certificate? without it the system roots are used)"
            ),
            e => e.to_string(),
        })?;
    let header = |name| {
        answer
            .headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    match answer.status {
        200 => {}
        300..=399 => {
            let to = header(http::header::LOCATION).unwrap_or("nowhere");
            return Err(format!(
                "answered {} (a redirect to {to}): redirects are not followed; set jwks_url to the URL that serves the keys",
                answer.status
            ));
        }
        s => return Err(format!("answered HTTP {s}")),
    }
    let keys = KeySet::parse(&answer.body, algs).map_err(|e| e.to_string())?;
    if keys.is_empty() {
        let why = keys
            .skipped
            .first()
            .map_or("the set is empty", |s| s.as_str());
        return Err(format!("no usable key for the issuer's algorithms ({why})"));
    }
    Ok(Fetched {
        keys,
        max_age: header(http::header::CACHE_CONTROL).and_then(keycell::cache_max_age),
    })
}
