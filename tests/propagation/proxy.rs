//! A TCP proxy on loopback whose links the test can cut: the "network" between a subscriber and
//! a node, so a test can break the stream mid-flight without touching either side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub addr: String,
    cut: watch::Sender<u64>,
    refuse: Arc<AtomicBool>,
}

impl Proxy {
    /// Proxies 127.0.0.1:<random> to `upstream`.
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cut, cuts) = watch::channel(0u64);
        let refuse = Arc::new(AtomicBool::new(false));
        let refusing = refuse.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if refusing.load(Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cuts = cuts.clone();
                // Only cuts after this connection opened end it.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut, refuse }
    }

    /// Drops every open connection and refuses new ones until [`Proxy::heal`].
    pub fn cut(&self) {
        self.refuse.store(true, Ordering::Relaxed);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn heal(&self) {
        self.refuse.store(false, Ordering::Relaxed);
    }
}
