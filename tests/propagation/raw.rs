//! A raw subscriber speaking the stream protocol by hand, for what the library would never do:
//! read slowly, claim a version from the future, present a wrong digest.

use std::time::Duration;

use recall::proto as pb;
use recall::proto::subscribe_response::Body;
use recall::proto::subscription_client::SubscriptionClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub struct Raw {
    pub up: mpsc::Sender<pb::SubscribeRequest>,
    pub down: tonic::Streaming<pb::SubscribeResponse>,
}

impl Raw {
    pub async fn open(addr: &str, hello: pb::Hello) -> Result<Self, tonic::Status> {
        // Small HTTP/2 windows, so a slow reader's backlog stays at the node, not in buffers.
        let security = crate::fixture::subscriber_security(&hello.subscriber_id);
        Self::open_as(addr, hello, security).await
    }

    /// Opens a stream with `hello`, proving `security`'s identity.
    pub async fn open_as(
        addr: &str,
        hello: pb::Hello,
        security: recall::transport::Security,
    ) -> Result<Self, tonic::Status> {
        let channel = recall::transport::Dialer::new(security)
            .with_window(64 * 1024)
            .connect(addr, recall::transport::Expect::AnyNode)
            .await
            .unwrap();
        let mut client = SubscriptionClient::new(channel);
        let (up, rx) = mpsc::channel(16);
        up.send(pb::SubscribeRequest {
            body: Some(pb::subscribe_request::Body::Hello(hello)),
        })
        .await
        .unwrap();
        let down = client
            .subscribe(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self { up, down })
    }

    /// The next message body, within 10 s.
    pub async fn next(&mut self) -> Body {
        let m = tokio::time::timeout(Duration::from_secs(10), self.down.message())
            .await
            .expect("no message from the node within 10 s")
            .expect("stream error")
            .expect("stream ended");
        m.body.expect("empty message")
    }

    /// Reads until a SnapshotBegin and returns its reason.
    pub async fn snapshot_reason(&mut self) -> String {
        loop {
            if let Body::SnapshotBegin(b) = self.next().await {
                return b.reason;
            }
        }
    }
}

pub fn hello(id: &str, version: u64, digest: u64, seed: u64) -> pb::Hello {
    pb::Hello {
        subscriber_id: id.into(),
        applied_version: version,
        digest,
        fingerprint_seed: seed,
        mode: "full".into(),
        expiries: false,
    }
}
