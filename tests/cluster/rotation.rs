//! Certificates rotated on disk are used for new connections without a restart, and connections
//! made before the rotation keep working: the node moves to a new CA's certificate, after which
//! clients of the new CA connect and clients of the old one are refused.

use std::time::Duration;

use recall::node::{Listeners, RunningNode, clock};
use recall::proto as pb;
use recall::proto::operator_client::OperatorClient;
use recall::transport::pki::Ca;
use recall::transport::{DEV_TRUST_DOMAIN, Dialer, Expect, Identity, Security, TlsFiles};
use tokio::net::TcpListener;

use crate::fixture::{PATIENCE, eventually, node_config};

async fn status_via(addr: &str, security: Security) -> Result<u64, String> {
    let channel = Dialer::new(security)
        .connect(addr, Expect::AnyNode)
        .await
        .map_err(|e| e.to_string())?;
    let reply = OperatorClient::new(channel)
        .status(pb::StatusRequest::default())
        .await
        .map_err(|s| recall::transport::errors::describe(&s))?;
    Ok(reply.into_inner().node_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_serve_new_connections_without_a_restart() {
    let d = DEV_TRUST_DOMAIN;
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let (old, new) = (Ca::generate(d).unwrap(), Ca::generate(d).unwrap());
    old.write(&pki).unwrap();
    let node_id = Identity::node(d, 1);
    let files = old.issue_into(&pki, &node_id).unwrap();
    let admin = Identity::operator(d, "admin");

    let listeners = Listeners {
        client: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: None,
        peer: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let addr = listeners.client.local_addr().unwrap().to_string();
    let peer = listeners.peer.local_addr().unwrap().to_string();
    let mut config = node_config(1, &[(1, peer)].into(), dir.path().join("node"));
    config.initial_members.clear();
    let security = Security::tls(files.clone(), d).unwrap();
    let node = RunningNode::start(config, listeners, security, clock::system())
        .await
        .unwrap();

    // A connection made before the rotation.
    let before = Dialer::new(old.security(&admin).unwrap())
        .connect(&addr, Expect::AnyNode)
        .await
        .unwrap();
    let mut before = OperatorClient::new(before);
    eventually("the node to serve its first admin", PATIENCE, || {
        let mut c = before.clone();
        async move {
            c.status(pb::StatusRequest::default())
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string())
        }
    })
    .await;

    // Rotate: a new CA bundle and a node certificate it issued, written in place.
    new.write(&pki).unwrap();
    let rotated = new.issue_into(&pki, &node_id).unwrap();
    assert_eq!(rotated, TlsFiles::in_dir(&pki, "node-1"));

    eventually(
        "new connections to use the rotated certificate",
        PATIENCE,
        || {
            let security = new.security(&admin).unwrap();
            let addr = addr.clone();
            async move { status_via(&addr, security).await.map(|_| ()) }
        },
    )
    .await;
    let refused = status_via(&addr, old.security(&admin).unwrap()).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("not issued by our CA")),
        "an old-CA client is refused after the rotation: {refused:?}"
    );
    before
        .status(pb::StatusRequest::default())
        .await
        .expect("a connection made before the rotation keeps working");
    tokio::time::timeout(Duration::from_secs(10), node.shutdown())
        .await
        .unwrap()
        .unwrap();
}
