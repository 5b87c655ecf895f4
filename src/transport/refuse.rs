//! Answers a connection recall will not serve with a reason the client can read: a gRPC client
//! gets UNAUTHENTICATED with the message, anything else an HTTP 400 with it as the body. The
//! connection is closed after a few seconds whatever the client does.

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

/// What a plaintext client is told.
pub const PLAINTEXT: &str = "plaintext connection refused: this port requires mutual TLS; connect \
     with TLS and a client certificate issued by the cluster's CA (`recall pki init DIR` makes \
     development certificates; the CLI finds them in ./recall-data/pki or $RECALL_PKI)";

/// How long a refused client may keep its connection.
const LINGER: Duration = Duration::from_secs(5);

/// Serves `io` with a refusal carrying `message` until the client leaves or [`LINGER`] passes.
pub async fn serve<IO>(io: IO, message: String)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let message = message.clone();
        async move { Ok::<_, Infallible>(refusal(&req, &message)) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(LINGER, conn).await;
}

fn refusal<B>(req: &hyper::Request<B>, message: &str) -> hyper::Response<String> {
    let grpc = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let http: tonic::codegen::http::Response<()> =
            tonic::Status::unauthenticated(message).into_http();
        let (parts, ()) = http.into_parts();
        hyper::Response::from_parts(parts, String::new())
    } else {
        let mut resp = hyper::Response::new(format!("{message}\n"));
        *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
        resp
    }
}
