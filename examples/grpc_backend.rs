//! A gRPC service for `bench/load.sh`: grpc.health.v1 (tonic-health) answering SERVING,
//! over h2c on one thread, the gRPC counterpart of the bench's one-worker nginx.
//!
//! Usage: grpc_backend HOST:PORT
//! Loopback only; runs until killed.

fn main() {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .expect("usage: grpc_backend HOST:PORT")
        .parse()
        .expect("HOST:PORT");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let (_reporter, health) = tonic_health::server::health_reporter();
            tonic::transport::Server::builder()
                .add_service(health)
                .serve(addr)
                .await
                .expect("the gRPC backend serves");
        });
}
