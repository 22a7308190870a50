//! The floor for bench/load.sh: a pingora proxy with no logic at all, configured like
//! ords-guard (`threads: 1`, no work stealing, no modules). ords-guard's cost over the
//! backend is this floor plus its own work; the load script prints both.
//!
//! cargo run --release --example passthrough -- LISTEN UPSTREAM [KEEPALIVE_POOL]
//!
//! KEEPALIVE_POOL sizes pingora's idle upstream connection pool (default 128), so the floor
//! can be measured with as many client connections as ords-guard's pool covers.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;

struct Passthrough(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();
    fn new_ctx(&self) {}
    fn init_downstream_modules(&self, _m: &mut pingora::modules::http::HttpModules) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream) = (&args[1], args[2].parse().expect("upstream address"));
    let pool = args
        .get(3)
        .map(|p| p.parse().expect("keep-alive pool size"));
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: pool
            .unwrap_or(ServerConf::default().upstream_keepalive_pool_size),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, Passthrough(upstream));
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
