//! A paced, bounded flood for `bench/flood.sh` (issue #10), loopback only.
//!
//!   flood token  ADDR RATE CONCURRENCY SECONDS
//!       token requests with random client ids and secrets
//!   flood forged ADDR RATE CONCURRENCY SECONDS PATH KID [CLIENT]
//!       GET PATH with distinct forged ES256 bearer tokens (the real kid, valid claims
//!       naming CLIENT or a random id, a random signature), which no verified-token cache
//!       can answer
//!   flood plain ADDR RATE CONCURRENCY SECONDS PATH KID
//!       the same requests without a token: what the connections alone cost
//!   flood opaque ADDR RATE CONCURRENCY SECONDS PATH KID
//!       GET PATH with distinct random opaque bearer tokens, each one an identity
//!       provider's introspection endpoint would have to be asked about (SPEC §16)
//!
//! Every request is its own connection from a random 127.x.y.z source address, so no
//! per-address throttle applies. At most CONCURRENCY are in flight; a tick that finds them
//! all busy is skipped (counted), so the rate is a ceiling. Prints what was sent and the
//! statuses seen.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::Rng;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn usage() -> ! {
    eprintln!("usage: flood token ADDR RATE CONCURRENCY SECONDS | flood forged|plain|opaque ADDR RATE CONCURRENCY SECONDS PATH KID");
    std::process::exit(2)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill(&mut b[..]);
    hex::encode(b)
}

fn request(mode: &str, path: &str, kid: &str, client: Option<&str>) -> Vec<u8> {
    match mode {
        "token" => {
            let body = format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                random_hex(8),
                random_hex(16)
            );
            format!("POST /oauth/token HTTP/1.1\r\nHost: flood\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
        }
        "plain" => {
            format!("GET {path} HTTP/1.1\r\nHost: flood\r\nConnection: close\r\n\r\n").into_bytes()
        }
        "opaque" => {
            let token = random_hex(24);
            format!("GET {path} HTTP/1.1\r\nHost: flood\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").into_bytes()
        }
        _ => {
            let now = ords_guard::oauth::token::now();
            let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": kid});
            let id = client.map_or_else(|| random_hex(8), str::to_string);
            let claims = serde_json::json!({
                "iss": "ords-guard", "sub": id, "client_id": id, "iat": now, "nbf": now,
                "exp": now + 3600, "jti": random_hex(16), "roles": ["example_role"],
                "scope": "example_priv",
            });
            let mut sig = [0u8; 64];
            rand::thread_rng().fill(&mut sig[..]);
            let token = format!(
                "{}.{}.{}",
                B64.encode(header.to_string()),
                B64.encode(claims.to_string()),
                B64.encode(sig)
            );
            format!("GET {path} HTTP/1.1\r\nHost: flood\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").into_bytes()
        }
    }
}

async fn send(target: SocketAddr, req: Vec<u8>) -> Option<u16> {
    let src = {
        let mut rng = rand::thread_rng();
        IpAddr::V4(Ipv4Addr::new(
            127,
            rng.gen_range(1..255),
            rng.gen_range(1..255),
            rng.gen_range(1..255),
        ))
    };
    let sock = tokio::net::TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::new(src, 0)).ok()?;
    let mut s = sock.connect(target).await.ok()?;
    s.write_all(&req).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 || !matches!(args[0].as_str(), "token" | "forged" | "plain" | "opaque") {
        usage()
    }
    let mode = args[0].clone();
    let target: SocketAddr = args[1].parse().unwrap_or_else(|_| usage());
    let rate: f64 = args[2].parse().unwrap_or_else(|_| usage());
    let concurrency: usize = args[3].parse().unwrap_or_else(|_| usage());
    let seconds: u64 = args[4].parse().unwrap_or_else(|_| usage());
    let (path, kid) = match mode.as_str() {
        "forged" | "plain" | "opaque" if matches!(args.len(), 7 | 8) => {
            (args[5].clone(), args[6].clone())
        }
        "forged" | "plain" | "opaque" => usage(),
        _ => (String::new(), String::new()),
    };
    assert!(target.ip().is_loopback(), "loopback targets only");
    let in_flight = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let (mut sent, mut skipped) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        tick.tick().await;
        if in_flight.load(Ordering::Acquire) >= concurrency {
            skipped += 1;
            continue;
        }
        sent += 1;
        in_flight.fetch_add(1, Ordering::AcqRel);
        let (in_flight, statuses) = (in_flight.clone(), statuses.clone());
        let req = request(&mode, &path, &kid, args.get(7).map(String::as_str));
        tokio::spawn(async move {
            let status = tokio::time::timeout(Duration::from_secs(10), send(target, req))
                .await
                .ok()
                .flatten()
                .map_or("error".to_string(), |s| s.to_string());
            *statuses.lock().unwrap().entry(status).or_default() += 1;
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
    // Let the last ones finish (bounded by their own 10 s timeout).
    let wait_end = Instant::now() + Duration::from_secs(11);
    while in_flight.load(Ordering::Acquire) > 0 && Instant::now() < wait_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen: Vec<String> = statuses
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    println!(
        "flood {mode}: sent {sent} in {seconds} s ({:.1}/s), skipped {skipped} (all {concurrency} busy), statuses {}",
        sent as f64 / seconds as f64,
        seen.join(" ")
    );
}
