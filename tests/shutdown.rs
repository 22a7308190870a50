//! Issue #14, bounded shutdown: SIGTERM with connections in every state ends the process
//! with 0 within the grace period plus the watchdog's bound, and the log stays small and
//! says what happened.

mod common;

use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The test config's `shutdown_grace_ms` plus the watchdog's 5 s, plus slack for a busy
/// machine.
const EXIT_WITHIN: Duration = Duration::from_secs(5 + 5 + 3);

/// Read until the peer has sent `n` status lines (bounded).
async fn responses(s: &mut TcpStream, n: usize) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&buf).matches("HTTP/1.1 ").count() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Open connections in every state a client can leave one in: keep-alive after an answer,
/// pipelined requests, idle, half a head, a refused head, a body still arriving, and an
/// idle admin connection. They are returned so they stay open through the SIGTERM.
async fn leave_connections(proxy: SocketAddr, admin: SocketAddr) -> Vec<TcpStream> {
    let mut keep = TcpStream::connect(proxy).await.unwrap();
    keep.write_all(b"GET /public/a HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert!(responses(&mut keep, 1).await.starts_with("HTTP/1.1 "));
    let mut piped = TcpStream::connect(proxy).await.unwrap();
    piped
        .write_all(b"GET /public/b HTTP/1.1\r\nHost: t\r\n\r\nGET /example/x HTTP/1.1\r\nHost: t\r\n\r\nGET /public/c HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let _ = responses(&mut piped, 2).await;
    let idle = TcpStream::connect(proxy).await.unwrap();
    let mut half = TcpStream::connect(proxy).await.unwrap();
    half.write_all(b"GET /public/c HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // Heads refused: both framings, and a Connection option pingora refused itself.
    let mut refused = TcpStream::connect(proxy).await.unwrap();
    refused
        .write_all(b"POST /public/d HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let mut nominated = TcpStream::connect(proxy).await.unwrap();
    nominated
        .write_all(b"GET /public/d HTTP/1.1\r\nHost: t\r\nConnection: :authority\r\n\r\n")
        .await
        .unwrap();
    // A body still arriving: a request in flight.
    let mut slow = TcpStream::connect(proxy).await.unwrap();
    slow.write_all(b"POST /public/e HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let admin_idle = TcpStream::connect(admin).await.unwrap();
    vec![
        keep, piped, idle, half, refused, nominated, slow, admin_idle,
    ]
}

/// After SIGTERM: exit 0 within `within`, a small log, and the true account of the drain.
fn assert_clean_exit(
    cycle: usize,
    started: Instant,
    within: Duration,
    status: std::process::ExitStatus,
    log: &str,
) {
    assert!(status.success(), "cycle {cycle}: {status}: {log}");
    assert!(
        started.elapsed() < within,
        "cycle {cycle}: exited after {:?}",
        started.elapsed()
    );
    assert!(
        log.len() < 256 * 1024,
        "cycle {cycle}: {} bytes of log",
        log.len()
    );
    assert!(
        log.contains("drained: stopping the listeners and exiting"),
        "cycle {cycle}: {log}"
    );
    assert!(
        log.contains("\"signal\":\"SIGTERM\""),
        "cycle {cycle}: {log}"
    );
    assert!(
        !log.contains("SIGINT received") && !log.contains("SIGTERM received"),
        "pingora's misleading line: {log}"
    );
    // The accept loops were told to stop: none spun on a runtime already gone.
    assert!(!log.contains("Accept() failed"), "cycle {cycle}: {log}");
    assert!(
        !log.contains("did not stop in time"),
        "cycle {cycle}: the watchdog had to end it: {log}"
    );
}

#[tokio::test]
async fn sigterm_exits_in_bounded_time_whatever_the_connections_do() {
    for cycle in 0..4 {
        let backend = Backend::start().await;
        let mut g = Guard::start(Options::new(&backend)).await;
        let _open = leave_connections(g.proxy, g.admin).await;
        let started = Instant::now();
        g.signal("TERM");
        let status = g.wait_exit(EXIT_WITHIN);
        let log = std::fs::read_to_string(&g.log).unwrap();
        assert_clean_exit(cycle, started, EXIT_WITHIN, status, &log);
    }
}

/// The same in `demo` mode, where the embedded backend is a third service to stop (the
/// two hangs seen in the field were demo processes). The example config's grace is 10 s.
#[tokio::test]
async fn demo_sigterm_exits_in_bounded_time_whatever_the_connections_do() {
    let within = Duration::from_secs(10 + 5 + 3);
    for cycle in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (proxy, admin, backend) = (free_port(), free_port(), free_port());
        let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
        let log = dir.path().join("demo.out");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
            .args(["--log-format", "json", "demo", "--listen"])
            .arg(addr(proxy).to_string())
            .arg("--admin-listen")
            .arg(addr(admin).to_string())
            .arg("--backend-listen")
            .arg(addr(backend).to_string())
            .arg("--dir")
            .arg(dir.path().join("demo"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("demo.err")).unwrap())
            .spawn()
            .unwrap();
        let output = || {
            format!(
                "{}{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                std::fs::read_to_string(dir.path().join("demo.err")).unwrap_or_default()
            )
        };
        let http = http_client();
        eventually(&format!("the demo to be ready: {}", output()), || async {
            matches!(http.get(format!("http://{}/readyz", addr(admin))).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        let _open = leave_connections(addr(proxy), addr(admin)).await;
        let started = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > within {
                let _ = child.kill();
                panic!(
                    "cycle {cycle}: the demo did not exit within {within:?}: {}",
                    output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_clean_exit(cycle, started, within, status, &output());
    }
}

/// Whether the process has a handler for `signal` (its `SigCgt` mask in /proc).
fn catches(pid: u32, signal: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Issue #31: a SIGTERM that comes while ords-guard is still starting is not lost (as PID 1
/// in a container an unhandled one is ignored, and `podman stop` waited for its SIGKILL;
/// elsewhere it killed the process with no drain). The config path is a symlink to a FIFO,
/// so the start is held at reading it: the signal is sent once the process catches SIGTERM
/// and before it has read a byte of its config. Once the process has the FIFO open the link
/// is pointed at a plain copy (for the reads that follow) and the config is written. The
/// process then starts, drains at once and exits 0.
#[test]
fn a_sigterm_during_start_up_drains_once_serving() {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hs.key"),
        b"0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    let text = format!(
        "listen: 127.0.0.1:{}\nadmin_listen: 127.0.0.1:{}\nupstream: http://127.0.0.1:1\ntoken: {{algorithm: HS256, signing_key_file: hs.key, key_id: k}}\ntimeouts: {{shutdown_grace_ms: 1000}}\n",
        free_port(),
        free_port()
    );
    let (fifo, plain) = (dir.path().join("held.fifo"), dir.path().join("plain.yaml"));
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::fs::write(&plain, &text).unwrap();
    let config = dir.path().join("ords-guard.yaml");
    std::os::unix::fs::symlink(&fifo, &config).unwrap();
    let log = dir.path().join("out.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ords-guard"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !catches(child.id(), libc::SIGTERM as u32) {
        assert!(
            Instant::now() < deadline,
            "SIGTERM never caught during start-up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    // A writer opening without blocking finds no reader (ENXIO) until the load waits on
    // the FIFO.
    let mut held = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(f) => break f,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENXIO), "{e}");
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "ords-guard exited before reading its config"
                );
                assert!(Instant::now() < deadline, "the config was never read");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    let swap = dir.path().join("swap.yaml");
    std::os::unix::fs::symlink(&plain, &swap).unwrap();
    std::fs::rename(&swap, &config).unwrap();
    held.write_all(text.as_bytes()).unwrap();
    drop(held);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline + EXIT_WITHIN,
            "no exit after the early SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(dir.path().join("err.log")).unwrap();
    assert!(status.success(), "{status}: {out}");
    assert!(
        out.contains(r#""message":"draining","signal":"SIGTERM""#),
        "{out}"
    );
}
