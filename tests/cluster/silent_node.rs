//! A convergence report never rounds up. With three `recall server` processes and a subscriber
//! attached to a follower, that follower frozen with SIGSTOP (its subscriber, frozen with it,
//! still holds the old state) makes `--wait-converged` and `recall status` say "not converged"
//! and name the node that did not answer, instead of counting only the subscribers that did.
//! Once the node runs again, the same wave is reported converged.

use recall::proto as pb;
use recall::subscriber::{Subscriber, SubscriberConfig};
use recall::transport::{DEV_TRUST_DOMAIN, Identity};

use crate::cli::recall;
use crate::fixture::{
    Client, ISSUER, Nodes, PATIENCE, Procs, converged, eventually, leader, revoke_range, security,
};

/// The cluster-wide convergence towards `version`, as node `client` reports it.
async fn convergence(client: &mut Client, version: u64) -> Result<pb::Convergence, String> {
    let req = pb::StatusRequest {
        version: Some(version),
        local_only: false,
    };
    let s = client
        .status(req)
        .await
        .map_err(|e| e.message().to_owned())?;
    Ok(s.into_inner().convergence.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_is_named_and_the_wave_is_not_reported_converged() {
    let procs = Procs::start(3, &[]);
    let l = leader(&procs).await;
    let f = procs
        .ids()
        .into_iter()
        .find(|id| *id != l)
        .expect("a follower");
    let mut lead = procs.client(l);
    let first = lead.revoke(revoke_range("silent", 0..1)).await.unwrap();
    let first = first.into_inner().version;
    converged(&procs, first).await;

    // A subscriber that follows the follower only.
    let id = "svc-behind-follower";
    let config = SubscriberConfig::new(
        vec![procs.addr(f).to_string()],
        id,
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, id)),
    );
    let sub = Subscriber::start(config).await.unwrap();
    if let Err(e) = sub.wait_version(first, PATIENCE).await {
        panic!("{e:#}: {:?}\n{}", sub.status(), procs.logs());
    }
    eventually("the leader to count the subscriber", PATIENCE, || {
        let mut lead = lead.clone();
        async move {
            let c = convergence(&mut lead, first).await?;
            match (c.converged, c.subscribers_applied) {
                (true, 1) => Ok(()),
                _ => Err(format!("{c:?}")),
            }
        }
    })
    .await;

    procs.pause(f);
    let leader_addr = procs.addr(l).to_string();
    let wait = [
        "revoke",
        "--kind",
        "token",
        "--ns",
        ISSUER,
        "while-frozen",
        "--wait-converged=1s",
    ];
    let run = recall(&leader_addr, &wait).await;
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !run.ok,
        "a wave that may not have landed is not a success: {out}"
    );
    assert!(
        out.contains(&format!("no answer: node {f}")) && out.contains("not converged"),
        "the report names the silent node: {out}"
    );
    assert!(!out.contains("converged: "), "{out}");
    let second: u64 = out
        .split("committed at version ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the write commits and says at which version: {out}"));

    let c = convergence(&mut lead, second).await.unwrap();
    assert!(!c.converged, "{c:?}");
    assert_eq!(c.silent_nodes, vec![f], "{c:?}");
    let run = recall(&leader_addr, &["status", "--version", &second.to_string()]).await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!("no answer: node {f}"))
            && run
                .stdout
                .contains(&format!("version {second}: not converged, unknown")),
        "recall status shows the silent node: {}",
        run.stdout
    );

    // The node runs again: its subscriber catches up, and the same wave is now converged.
    procs.resume(f);
    sub.wait_version(second, PATIENCE).await.unwrap();
    eventually("the wave to be reported converged", PATIENCE, || {
        let mut lead = lead.clone();
        async move {
            let c = convergence(&mut lead, second).await?;
            match (
                c.converged,
                c.silent_nodes.is_empty(),
                c.subscribers_applied,
            ) {
                (true, true, 1) => Ok(()),
                _ => Err(format!("{c:?}")),
            }
        }
    })
    .await;
    assert!(procs.running().len() == 3);
    sub.shutdown().await;
}
