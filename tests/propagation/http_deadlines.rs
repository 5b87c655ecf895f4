//! The sidecar's HTTP face does not wait on a client without a deadline: a client that sends
//! half a request line, or headers that never end, or half of the HTTP/2 preface, is closed once
//! the header-read timeout passes, and so is a keep-alive connection left idle; a body that
//! never ends is refused at the body-read timeout; a stalled client does not hold a shutdown.
//! Meanwhile ordinary requests on the same listener are answered, and a slow client that
//! completes its request within the timeout is served. The timeouts are shortened through the sidecar's
//! configuration; every HTTP listener serves its connections the same way
//! (`recall::transport::http::serve`).

use std::net::SocketAddr;
use std::time::Duration;

use recall::sidecar::{RunningSidecar, SidecarConfig};
use recall::transport::HttpTimeouts;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::fixture::{OneNode, subscriber_security};
use crate::sidecar_fixture::{get_text, url};
use crate::tls_http_client;

const TIMEOUTS: HttpTimeouts = HttpTimeouts {
    header_read: Duration::from_millis(800),
    body_read: Duration::from_millis(1500),
    idle: Duration::from_secs(2),
    close_grace: Duration::from_secs(1),
};
/// How much later than its deadline a close may be seen on a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

async fn sidecar(node: &OneNode, id: &str, timeouts: HttpTimeouts) -> RunningSidecar {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = SidecarConfig::new(node.subscriber_config(id));
    config.http_listen = http.local_addr().unwrap().to_string();
    config.http_timeouts = timeouts;
    RunningSidecar::start(config, http, None).await.unwrap()
}

/// Reads until the server closes `stream` (end of stream or reset), failing after `within`:
/// how long that took from `since`, and the bytes the server sent before closing.
async fn closed_within(
    stream: &mut (impl AsyncRead + Unpin),
    since: Instant,
    within: Duration,
) -> (Duration, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(since + within, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (since.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {within:?}; it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// A stalled client is closed after the header-read timeout (not before, not much after).
async fn stalled_is_closed(addr: SocketAddr, partial: &[u8]) {
    let since = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(partial).await.unwrap();
    let (took, sent) = closed_within(&mut stream, since, TIMEOUTS.header_read + SLACK).await;
    assert!(
        took >= TIMEOUTS.header_read - Duration::from_millis(100),
        "closed after {took:?}, before the header-read timeout"
    );
    assert!(
        sent.is_empty(),
        "a stalled client gets no answer: {:?}",
        String::from_utf8_lossy(&sent)
    );
}

/// Reads one HTTP/1.1 response with a `content-length` from `stream`: its status line.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().unwrap())
                })
                .expect("a content-length");
            if got.len() >= end + 4 + length {
                return text.lines().next().unwrap().to_owned();
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "closed before the whole response: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_headers_are_closed_while_complete_requests_are_served() {
    let node = OneNode::start().await;
    let sidecar = sidecar(&node, "sc-deadlines-1", TIMEOUTS).await;
    let addr = sidecar.http_addr();

    // Three stalled clients at once, and ordinary requests while they wait.
    let stalled = tokio::spawn(async move {
        tokio::join!(
            stalled_is_closed(addr, b"GET /healthz HT"),
            stalled_is_closed(addr, b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Slow: "),
            stalled_is_closed(addr, b"PRI * HTTP/2.0\r\n"),
        )
    });
    for _ in 0..3 {
        let (code, body) = get_text(url(&sidecar, "/healthz", &[])).await;
        assert_eq!(code, 200, "{body}");
    }

    // A slow client that completes its request within the header-read timeout is served: the
    // request goes out in four pieces over about half the timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let pieces: [&[u8]; 4] = [
        b"GET /heal",
        b"thz HTTP/1.1\r\n",
        b"Host: sidecar\r\n",
        b"Connection: close\r\n\r\n",
    ];
    let pace = TIMEOUTS.header_read / 8;
    for piece in pieces {
        slow.write_all(piece).await.unwrap();
        tokio::time::sleep(pace).await; // the client's own pace, not a wait for the server
    }
    let status = read_response(&mut slow).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    stalled.await.unwrap();
    let (code, body) = get_text(url(&sidecar, "/healthz", &[])).await;
    assert_eq!(
        code, 200,
        "the listener still serves after closing the stalled: {body}"
    );
    sidecar.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let node = OneNode::start().await;
    let sidecar = sidecar(&node, "sc-deadlines-2", TIMEOUTS).await;
    let mut stream = TcpStream::connect(sidecar.http_addr()).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n")
            .await
            .unwrap();
        let status = read_response(&mut stream).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    // Nothing more: the next request's header does not begin, and the server closes.
    let since = Instant::now();
    let (took, sent) = closed_within(&mut stream, since, TIMEOUTS.header_read + SLACK).await;
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(
        took >= TIMEOUTS.header_read - Duration::from_millis(100),
        "{took:?}"
    );
    sidecar.shutdown().await.unwrap();
}

/// On HTTP/2 (prior knowledge, as a proxy speaking h2c would), a connection that has served a
/// request and then carries none is closed once the idle timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let node = OneNode::start().await;
    let sidecar = sidecar(&node, "sc-deadlines-h2", TIMEOUTS).await;
    let tcp = TcpStream::connect(sidecar.http_addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let mut conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://{}/healthz", sidecar.http_addr()))
        .body(Empty::new())
        .unwrap();
    let response = send.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let since = Instant::now();
    tokio::time::timeout(TIMEOUTS.idle + SLACK, &mut conn)
        .await
        .expect("the server closes an idle HTTP/2 connection")
        .unwrap()
        .unwrap();
    let took = since.elapsed();
    assert!(
        took >= TIMEOUTS.idle - Duration::from_millis(100),
        "closed after {took:?}, before the idle timeout"
    );
    sidecar.shutdown().await.unwrap();
}

/// A request whose body stops half-way is answered 400 once the body-read timeout passes, and
/// its connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_is_refused_at_the_body_read_timeout() {
    let node = OneNode::start().await;
    let sidecar = sidecar(&node, "sc-deadlines-3", TIMEOUTS).await;
    let mut stream = TcpStream::connect(sidecar.http_addr()).await.unwrap();
    stream.write_all(STALLED_BODY).await.unwrap();
    let since = Instant::now();
    let status = read_response(&mut stream).await;
    let took = since.elapsed();
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    assert!(
        took >= TIMEOUTS.body_read - Duration::from_millis(100),
        "answered after {took:?}, before the body-read timeout"
    );
    closed_within(&mut stream, since, TIMEOUTS.body_read + SLACK).await;
    sidecar.shutdown().await.unwrap();
}

/// A request with half its body sent and nothing more.
const STALLED_BODY: &[u8] = b"POST /v1/token HTTP/1.1\r\nHost: sidecar\r\n\
    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tok";

/// Stopping the sidecar waits for requests in flight only as long as the close grace: neither a
/// client stalled in its header nor one stalled in its body holds the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_hold_a_shutdown() {
    let timeouts = HttpTimeouts {
        body_read: Duration::from_secs(3600),
        close_grace: Duration::from_millis(500),
        ..TIMEOUTS
    };
    let node = OneNode::start().await;
    let sidecar = sidecar(&node, "sc-deadlines-4", timeouts).await;
    let mut in_header = TcpStream::connect(sidecar.http_addr()).await.unwrap();
    in_header.write_all(b"GET /healthz HT").await.unwrap();
    // The stalled request follows a complete one on its connection: once the first is answered,
    // the server goes straight on to the second, already in its buffer, and waits in its body.
    let mut in_body = TcpStream::connect(sidecar.http_addr()).await.unwrap();
    let mut pipelined = b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n".to_vec();
    pipelined.extend_from_slice(STALLED_BODY);
    in_body.write_all(&pipelined).await.unwrap();
    let status = read_response(&mut in_body).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let since = Instant::now();
    tokio::time::timeout(timeouts.close_grace + SLACK, sidecar.shutdown())
        .await
        .expect("shutdown within the close grace")
        .unwrap();
    closed_within(&mut in_header, since, SLACK).await;
    closed_within(&mut in_body, since, SLACK).await;
}

/// The same deadline holds on the TLS listener (`check_tls`): after its handshake, a client with
/// a valid certificate that stalls in its request line is closed, while a complete request over
/// TLS is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_stalled_request_is_closed_and_a_complete_one_served() {
    let node = OneNode::start().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = SidecarConfig::new(node.subscriber_config("sc-deadlines-tls"));
    config.http_listen = http.local_addr().unwrap().to_string();
    config.check_tls = Some(subscriber_security("sc-deadlines-tls"));
    config.http_timeouts = TIMEOUTS;
    let sidecar = RunningSidecar::start(config, http, None).await.unwrap();
    let addr = sidecar.http_addr();

    let since = Instant::now();
    let mut stalled = tls_http_client::connect(addr).await;
    stalled.write_all(b"GET /healthz HT").await.unwrap();
    stalled.flush().await.unwrap();

    let mut complete = tls_http_client::connect(addr).await;
    complete
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n")
        .await
        .unwrap();
    let status = read_response(&mut complete).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    let (took, sent) = closed_within(&mut stalled, since, TIMEOUTS.header_read + SLACK).await;
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(
        took >= TIMEOUTS.header_read - Duration::from_millis(100),
        "{took:?}"
    );
    sidecar.shutdown().await.unwrap();
}
