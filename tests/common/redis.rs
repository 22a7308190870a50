//! A real Redis (Debian's `redis-server`, installed by scripts/setup.sh) on an ephemeral
//! loopback port, persistence off, that a test can freeze, thaw, kill and start again on
//! the same port. Spoken to with `redis-cli`, independently of the client under test.

use super::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    password: Option<String>,
    /// Set when it speaks only TLS (`rediss://`): where its certificate files are.
    tls: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port(), None)
    }

    /// One that asks for `password` (`requirepass`).
    pub fn with_password(password: &str) -> Redis {
        Redis::start_on(free_port(), Some(password.to_string()))
    }

    /// A port for a Redis not started yet (see [`Redis::run`]).
    pub fn stopped() -> Redis {
        Redis {
            port: free_port(),
            password: None,
            tls: None,
            child: None,
        }
    }

    /// One that speaks only TLS, serving `pki`'s leaf (no plain port).
    pub fn with_tls(pki: &super::pki::Pki) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        for (name, pem) in [
            ("ca.pem", &pki.ca),
            ("cert.pem", &pki.cert),
            ("key.pem", &pki.key),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        let mut r = Redis {
            port: free_port(),
            password: None,
            tls: Some(dir),
            child: None,
        };
        r.run();
        r
    }

    fn start_on(port: u16, password: Option<String>) -> Redis {
        let mut r = Redis {
            port,
            password,
            tls: None,
            child: None,
        };
        r.run();
        r
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("{scheme}://127.0.0.1:{}/0", self.port),
        }
    }

    /// Start (again) on the same port, and wait until it answers PING.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(dir) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.path().join("cert.pem"))
                .arg("--tls-key-file")
                .arg(dir.path().join("key.pem"))
                .args(["--tls-auth-clients", "no"]),
        };
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/setup.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run one command with `redis-cli`; its output (raw).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"]);
        if let Some(dir) = &self.tls {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(dir.path().join("ca.pem"));
        }
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    /// A key's remaining time to live in ms (PTTL: -1 without expiry, -2 when absent).
    pub fn pttl(&self, key: &str) -> i64 {
        self.cli(&["PTTL", key]).trim().parse().unwrap()
    }

    /// SIGSTOP: connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// SIGKILL and reap: every connection drops, every count is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A frozen process takes SIGKILL too.
            self.kill();
        }
    }
}

/// A TCP server that is not Redis: it answers every read with `reply`, or never answers
/// (`None`). For "a store that answers garbage or hangs".
pub async fn impostor(reply: Option<&'static [u8]>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Some(r) = reply {
                        if s.write_all(r).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    port
}
