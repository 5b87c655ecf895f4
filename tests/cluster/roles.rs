//! Every operator call needs a role bound in the replicated state: a viewer cannot revoke, a
//! revoker cannot lift or add rules, only an admin changes membership or roles, and each refusal
//! names the role needed and the identity seen. The audit history names the certificate's
//! identity as the actor, whatever the client says in `actor`; writes beyond an identity's rate
//! are refused with a time to retry after.

use recall::proto as pb;
use recall::transport::{DEV_TRUST_DOMAIN, Identity};
use tonic::Code;

use crate::fixture::{
    Client, Cluster, PATIENCE, audit_log, client_as, converged, eventually, leader, operator,
    revoke_range, token,
};

fn op(name: &str) -> String {
    Identity::operator(DEV_TRUST_DOMAIN, name).to_string()
}

async fn grant(admin: &mut Client, who: &str, role: &str) -> u64 {
    admin
        .set_role(pb::SetRoleRequest {
            identity: who.into(),
            role: role.into(),
            reason: "tests".into(),
        })
        .await
        .expect("an admin binds roles")
        .into_inner()
        .version
}

fn denied<T: std::fmt::Debug>(r: Result<T, tonic::Status>, need: &str, who: &str) {
    let s = r.expect_err("refused");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(
        s.message().contains(&format!("needs the {need} role")) && s.message().contains(who),
        "{}",
        s.message()
    );
}

fn lift_one() -> pb::LiftRequest {
    pb::LiftRequest {
        keys: vec![token("r-0").key.unwrap()],
        rules: vec![],
        actor: String::new(),
        reason: String::new(),
        wait: None,
    }
}

fn rule() -> pb::AddRuleRequest {
    pb::AddRuleRequest {
        rule: Some(pb::Rule {
            scope: Some(pb::RuleScope {
                kind: pb::ScopeKind::Subject as i32,
                namespace: crate::fixture::ISSUER.into(),
                value: "alice".into(),
            }),
            not_before_ms: 1_000,
            expires_at_ms: None,
        }),
        actor: String::new(),
        reason: String::new(),
        wait: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_does_what_it_may_and_refusals_name_the_role_and_the_identity() {
    let cluster = Cluster::start_with(3, |c| {
        c.write_rate = recall::node::rate::WriteRate {
            items_per_second: 50,
            burst: 100,
        }
    })
    .await;
    let l = leader(&cluster).await;
    // Follower 2 or 3 serves the restricted operators: refusals and forwarding both go through it.
    let f = if l == 2 { 3 } else { 2 };
    let mut admin = cluster.client(l);
    grant(&mut admin, "vera", "viewer").await;
    grant(&mut admin, "rick", "revoker").await;
    let v = grant(&mut admin, &op("rita"), "recaller").await;
    converged(&cluster, v).await;
    let as_ = |name: &str| client_as(cluster.addr(f), operator(name));
    let (mut vera, mut rick, mut rita, mut nobody) =
        (as_("vera"), as_("rick"), as_("rita"), as_("nobody"));

    vera.status(pb::StatusRequest::default())
        .await
        .expect("a viewer reads status");
    denied(
        vera.revoke(revoke_range("r", 0..1)).await,
        "revoker",
        &op("vera"),
    );
    denied(
        nobody.status(pb::StatusRequest::default()).await,
        "viewer",
        &op("nobody"),
    );

    let mut on_behalf = revoke_range("r", 0..2);
    on_behalf.actor = "alice from the help desk".into();
    let revoked = rick.revoke(on_behalf).await.expect("a revoker revokes");
    let revoked = revoked.into_inner().version;
    denied(rick.lift(lift_one()).await, "recaller", &op("rick"));
    denied(rick.add_rule(rule()).await, "recaller", &op("rick"));

    rita.add_rule(rule()).await.expect("a recaller adds rules");
    rita.lift(lift_one()).await.expect("a recaller lifts");
    denied(
        rita.set_role(pb::SetRoleRequest {
            identity: "rita".into(),
            role: "admin".into(),
            reason: String::new(),
        })
        .await,
        "admin",
        &op("rita"),
    );
    denied(
        rita.add_learner(pb::AddLearnerRequest {
            node_id: 4,
            address: "127.0.0.1:1".into(),
        })
        .await,
        "admin",
        &op("rita"),
    );
    denied(
        rita.change_membership(pb::ChangeMembershipRequest {
            voters: vec![1, 2],
            keep_removed_as_learners: true,
        })
        .await,
        "admin",
        &op("rita"),
    );
    // The last admin cannot remove itself.
    let s = admin
        .set_role(pb::SetRoleRequest {
            identity: "admin".into(),
            role: String::new(),
            reason: String::new(),
        })
        .await
        .expect_err("the only admin stays");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");

    // The audit history names the certificate's identity; the client's actor is a note.
    let records = audit_log(&mut cluster.client(l)).await;
    let r = records.iter().find(|r| r.version == revoked).unwrap();
    assert_eq!(r.actor, op("rick"));
    assert_eq!(r.on_behalf_of, "alice from the help desk");
    let bound = records
        .iter()
        .filter(|r| r.command.starts_with("bind "))
        .count();
    assert_eq!(bound, 4, "the first admin and three grants: {records:?}");

    // Past its burst, an identity is told when to retry; nothing of the refused write lands.
    // (A write as large as the burst goes when the bucket is full, and empties it.)
    let rick_alone = as_("rick");
    eventually("rick's bucket to refill", PATIENCE, || {
        let mut c = rick_alone.clone();
        async move {
            c.revoke(revoke_range("burst", 0..100))
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string())
        }
    })
    .await;
    let s = rick_alone
        .clone()
        .revoke(revoke_range("burst-2", 0..100))
        .await
        .expect_err("over the burst");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    let after: u64 = s
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("a retry-after-ms entry");
    assert!(after > 0 && s.message().contains("retry after"), "{s:?}");
}
