//! gRPC streaming calls through the real binary (SPEC §17), between real tonic peers over
//! h2c: a server-streaming call (grpc.health.v1 `Watch`) whose messages arrive one by one
//! as the backend sends them, and a bidirectional one (grpc.reflection.v1
//! `ServerReflectionInfo`) whose requests and answers alternate on one open stream; each
//! decided on its method path, refused as gRPC refuses without a token.

mod common;

use common::*;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

/// Within a bound: a message that does not come fails the test.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within 20 s"))
}

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::test]
async fn streaming_calls_pass_both_ways_message_by_message() {
    // The backend: health (server streaming) and reflection (bidirectional).
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let http_backend = Backend::start().await;
    let g = Guard::start(Options {
        upstream: format!("http://{backend}"),
        extra: "upstream_protocol: h2c\n".into(),
        registry: registry_yaml().replacen(
            "privileges:\n",
            "privileges:\n  - name: grpc_streams\n    roles: [example_role]\n    patterns: [\"/grpc.health.v1.Health/*\", \"/grpc.reflection.v1.ServerReflection/*\"]\n",
            1,
        ),
        ..Options::new(&http_backend)
    })
    .await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", g.proxy))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Server streaming: the first status, then each change as the backend reports it.
    let mut health = HealthClient::new(channel.clone());
    let watch = HealthCheckRequest {
        service: "orders".into(),
    };
    let mut updates = health
        .watch(bearer(watch.clone(), &token))
        .await
        .unwrap()
        .into_inner();
    let status = |m: Option<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>| {
        m.expect("the stream is open").unwrap().status
    };
    assert_eq!(
        status(within("first status", updates.next()).await),
        ServingStatus::Serving as i32
    );
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::NotServing)
        .await;
    assert_eq!(
        status(within("the change", updates.next()).await),
        ServingStatus::NotServing as i32
    );
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    assert_eq!(
        status(within("the change back", updates.next()).await),
        ServingStatus::Serving as i32
    );
    drop(updates);

    // Bidirectional: each request answered on the open stream before the next is sent.
    let (tx, rx) = mpsc::channel(4);
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let mut answers = reflection
        .server_reflection_info(bearer(ReceiverStream::new(rx), &token))
        .await
        .unwrap()
        .into_inner();
    for ask in [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into()),
        MessageRequest::ListServices(String::new()),
    ] {
        tx.send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(ask.clone()),
        })
        .await
        .unwrap();
        let answer = within("the answer", answers.next())
            .await
            .expect("the stream is open")
            .unwrap();
        match (ask, answer.message_response.unwrap()) {
            (MessageRequest::ListServices(_), MessageResponse::ListServicesResponse(l)) => {
                let names: Vec<_> = l.service.iter().map(|s| s.name.as_str()).collect();
                assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
            }
            (
                MessageRequest::FileContainingSymbol(_),
                MessageResponse::FileDescriptorResponse(f),
            ) => {
                assert!(!f.file_descriptor_proto.is_empty());
            }
            (ask, other) => panic!("{ask:?} answered with {other:?}"),
        }
    }
    // The client ends its side; the server ends the call with its trailers (status OK).
    drop(tx);
    assert!(within("the end of the call", answers.next())
        .await
        .is_none());

    // Without a token: refused before the backend, as gRPC refuses.
    let refused = HealthClient::new(channel)
        .watch(tonic::Request::new(watch))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let log = g.output_with("\"decision\":\"unauthenticated\"").await;
    assert!(log.contains("\"protocol\":\"HTTP/2\""), "{log}");
    assert!(!log.contains(&token));
}
