//! A proxy that swallows one direction only is a one-way link: what clients send still reaches
//! the server, on open connections and on ones opened during the fault, while every answer is
//! lost and counted; a proxy that swallows what clients send holds new connections instead (a
//! SYN nobody answers). On heal, connections that lost bytes are reset and new ones work.

use std::time::Duration;

use recall_chaos::proxy::{Blackhole, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// An echo server on 127.0.0.1 that reports every chunk it receives.
async fn echo() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// The next chunk the server received, within 5 s.
async fn next(received: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<u8> {
    timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("the server received a chunk within 5 s")
        .expect("the server runs")
}

/// Waits up to 5 s for `probe` to hold.
async fn until(what: &str, probe: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_link_that_swallows_answers_still_delivers_requests_on_old_and_new_connections() {
    let (server, mut received) = echo().await;
    let proxy = Proxy::start("one-way", server).await.unwrap();
    let link = proxy.link();
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    old.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    timeout(Duration::from_secs(5), old.read_exact(&mut buf))
        .await
        .expect("the echo within 5 s")
        .unwrap();
    assert_eq!(&buf, b"before");
    assert_eq!(next(&mut received).await, b"before");

    link.blackhole(Blackhole::Down);
    old.write_all(b"during").await.unwrap();
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    new.write_all(b"opened").await.unwrap();
    // Both requests reach the server; neither echo comes back.
    let mut got = vec![next(&mut received).await, next(&mut received).await];
    got.sort();
    assert_eq!(got, vec![b"during".to_vec(), b"opened".to_vec()]);
    until("both answers swallowed", || {
        link.counters().dropped_down >= 12
    })
    .await;
    let mut one = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(200), old.read(&mut one))
            .await
            .is_err(),
        "no answer came back"
    );
    let c = link.counters();
    assert_eq!((c.held, c.dropped_up), (0, 0), "{c:?}");

    // What clients send is swallowed: a new connection is held, never reaching the server.
    link.blackhole(Blackhole::Up);
    let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
    held.write_all(b"lost").await.unwrap();
    until("the new connection held", || link.counters().held == 1).await;
    until("its bytes swallowed", || link.counters().dropped_up >= 4).await;
    assert!(received.try_recv().is_err(), "nothing reached the server");

    // Healed: the connections that lost bytes are reset; a new one works both ways.
    link.heal();
    let reset = timeout(Duration::from_secs(5), old.read(&mut one))
        .await
        .expect("the broken connection ends");
    assert!(matches!(reset, Ok(0) | Err(_)), "{reset:?}");
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    fresh.write_all(b"healed").await.unwrap();
    timeout(Duration::from_secs(5), fresh.read_exact(&mut buf))
        .await
        .expect("the echo within 5 s")
        .unwrap();
    assert_eq!(&buf, b"healed");
}
