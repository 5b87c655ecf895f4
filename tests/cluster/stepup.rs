//! Step-up on a cluster with the production policy: a lift is not applied on one operator's
//! word; it waits as a pending request that only a different operator with the needed role can
//! approve, once, for exactly the command proposed, before it expires. An `otp` operation needs
//! the operator's current one-time code, and each code works once. The history names proposer
//! and approver, and never holds a secret.

use recall::node::stepup::{OtpSecret, Requirement, StepUpPolicy, policy::Operation};
use recall::proto as pb;
use recall::transport::{DEV_TRUST_DOMAIN, Identity};
use tonic::Code;

use crate::fixture::{
    Client, Cluster, audit_log, client_as, converged, leader, operator, revoke, status, token,
};

fn op(name: &str) -> String {
    Identity::operator(DEV_TRUST_DOMAIN, name).to_string()
}

fn lift_one(value: &str) -> pb::LiftRequest {
    pb::LiftRequest {
        keys: vec![token(value).key.unwrap()],
        rules: vec![],
        actor: String::new(),
        reason: "false positive".into(),
        wait: None,
    }
}

fn refused<T: std::fmt::Debug>(r: Result<T, tonic::Status>, says: &str) -> tonic::Status {
    let s = r.expect_err("refused");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(
        s.message().contains(says),
        "{:?} does not say {says:?}",
        s.message()
    );
    s
}

async fn grant(client: &mut Client, who: &str, role: &str) -> Result<u64, tonic::Status> {
    Ok(client
        .set_role(pb::SetRoleRequest {
            identity: who.into(),
            role: role.into(),
            reason: "step-up tests".into(),
        })
        .await?
        .into_inner()
        .version)
}

async fn pending(client: &mut Client) -> Vec<pb::PendingRequest> {
    client
        .list_pending(pb::ListPendingRequest {})
        .await
        .expect("lists pending requests")
        .into_inner()
        .requests
}

/// The pending request `id` as the node behind `client` lists it, once it has applied it.
async fn pending_one(client: &mut Client, id: &str) -> pb::PendingRequest {
    crate::fixture::eventually("the request to be listed", crate::fixture::PATIENCE, || {
        let mut c = client.clone();
        let id = id.to_owned();
        async move {
            pending(&mut c)
                .await
                .into_iter()
                .find(|p| p.id == id)
                .ok_or_else(|| format!("{id} not listed yet"))
        }
    })
    .await
}

async fn approve(
    client: &mut Client,
    id: &str,
    hash: &[u8],
) -> Result<pb::WriteReply, tonic::Status> {
    Ok(client
        .approve(pb::ApproveRequest {
            id: id.into(),
            command_hash: hash.to_vec(),
            reason: "checked the ticket".into(),
        })
        .await?
        .into_inner())
}

/// Waits until the first leader bound the configured admin (with the seed).
async fn seeded(client: &mut Client) {
    crate::fixture::eventually(
        "the first admin to be bound",
        crate::fixture::PATIENCE,
        || {
            let mut c = client.clone();
            async move {
                let r = c.list_roles(pb::ListRolesRequest {}).await;
                match r {
                    Ok(r) if !r.get_ref().bindings.is_empty() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await
}

fn with_otp<T>(code: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("recall-otp", code.parse().expect("ascii"));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lift_waits_for_a_different_operator_and_the_history_names_both() {
    let cluster = Cluster::start_with(3, |c| c.step_up = StepUpPolicy::production()).await;
    let l = leader(&cluster).await;
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != l).collect();
    // The proposer talks to one follower, the approver to the other: both forward to the leader.
    let mut admin = cluster.client(followers[0]);
    let mut bob = client_as(cluster.addr(followers[1]), operator("bob"));
    let mut carol = client_as(cluster.addr(followers[1]), operator("carol"));
    seeded(&mut admin).await;

    admin.revoke(revoke(vec![token("leaked")])).await.unwrap();
    // With nobody else to approve, a lift says who must be granted first.
    refused(
        admin.lift(lift_one("leaked")).await,
        "no other operator holds the recaller role",
    );
    // The only admin may bring in a second one alone (the history says the rule was waived)...
    grant(&mut admin, &op("bob"), "admin").await.unwrap();
    // ...after which role changes wait for a second admin too.
    let s = refused(
        grant(&mut admin, &op("carol"), "viewer").await,
        "needs a second operator's approval",
    );
    let grant_id = s
        .metadata()
        .get("recall-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let grant_req = pending_one(&mut bob, &grant_id).await;
    assert_eq!(grant_req.approver_role, "admin");
    approve(&mut bob, &grant_id, &grant_req.command_hash)
        .await
        .expect("a second admin approves the grant");

    let s = refused(
        admin.lift(lift_one("leaked")).await,
        "lift needs a second operator's approval: ask them to run 'recall approve ",
    );
    assert!(s.message().contains("within 10m"), "{}", s.message());
    let id = s
        .metadata()
        .get("recall-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(s.message().contains(&id), "{}", s.message());
    let version = converged(&cluster, 0).await[&l].applied_version;
    assert_eq!(
        converged(&cluster, version).await[&l].entries,
        1,
        "the lift waits: still revoked"
    );

    let req = &pending_one(&mut bob, &id).await;
    assert_eq!(req.proposer, op("admin"));
    assert_eq!(req.approver_role, "recaller");
    assert!(req.command.contains("lift"), "{}", req.command);

    // The proposer cannot approve their own request.
    refused(
        approve(&mut admin, &id, &req.command_hash).await,
        "cannot approve it",
    );
    // An approval names the exact command it approves.
    let mut other = req.command_hash.clone();
    other[0] ^= 1;
    refused(approve(&mut bob, &id, &other).await, "different command");
    // An operator without the role the change needs cannot approve it.
    refused(
        approve(&mut carol, &id, &req.command_hash).await,
        "needs the recaller role",
    );

    let r = approve(&mut bob, &id, &req.command_hash)
        .await
        .expect("bob approves");
    assert_eq!(r.removed, 1, "{r:?}");
    assert_eq!(
        converged(&cluster, r.version).await[&l].entries,
        0,
        "lifted everywhere"
    );
    // An approval works once.
    refused(
        approve(&mut bob, &id, &req.command_hash).await,
        "no pending request",
    );

    let history = audit_log(&mut cluster.client(l)).await;
    let proposal = history
        .iter()
        .find(|h| h.command.starts_with(&format!("propose request {id}")))
        .expect("the proposal is in the history");
    assert_eq!(proposal.actor, op("admin"));
    let approval = history
        .iter()
        .find(|h| h.command.starts_with(&format!("approve request {id}")))
        .expect("the approval is in the history");
    assert_eq!(approval.actor, op("bob"));
    assert!(
        approval
            .command
            .contains(&format!("proposed by {}", op("admin"))),
        "{}",
        approval.command
    );
    let waived = history
        .iter()
        .find(|h| {
            h.command
                .contains(&format!("bind {} to role admin", op("bob")))
        })
        .expect("the grant is in the history");
    assert!(
        waived.command.contains("two_person waived"),
        "{}",
        waived.command
    );
    assert_eq!(waived.actor, op("admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_codes_work_once_and_requests_expire() {
    let mut policy = StepUpPolicy::production();
    policy.rules.insert(Operation::Lift, Requirement::Otp);
    // Requests expire a millisecond after they are proposed: any approval comes too late.
    policy.approval_window_ms = 1;
    let cluster = Cluster::start_with(1, move |c| c.step_up = policy.clone()).await;
    leader(&cluster).await;
    let mut admin = cluster.client(1);
    seeded(&mut admin).await;
    admin
        .revoke(revoke(vec![token("a"), token("b")]))
        .await
        .unwrap();
    grant(&mut admin, &op("bob"), "admin").await.unwrap();
    let mut bob = client_as(cluster.addr(1), operator("bob"));

    // An expired request cannot be approved.
    let rule = pb::AddRuleRequest {
        rule: Some(pb::Rule {
            scope: Some(pb::RuleScope {
                kind: pb::ScopeKind::Issuer as i32,
                namespace: crate::fixture::ISSUER.into(),
                value: String::new(),
            }),
            not_before_ms: 1_700_000_000_000,
            expires_at_ms: None,
        }),
        actor: String::new(),
        reason: "mass recall".into(),
        wait: None,
    };
    let s = refused(
        admin.add_rule(rule).await,
        "needs a second operator's approval",
    );
    let id = s
        .metadata()
        .get("recall-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let hash = {
        // The request is already past its window, so ListPending no longer shows it; the hash
        // an approver would have seen is the proposal's, kept in the history.
        let history = audit_log(&mut admin).await;
        assert!(
            history
                .iter()
                .any(|h| h.command.starts_with(&format!("propose request {id}")))
        );
        vec![0u8; 32]
    };
    refused(approve(&mut bob, &id, &hash).await, "expired");

    // A lift needs a current code; without one it says how to give it.
    refused(admin.lift(lift_one("a")).await, "needs a one-time code");
    refused(
        admin.lift(with_otp("123456", lift_one("a"))).await,
        "no one-time-code secret enrolled",
    );
    let secret = OtpSecret::generate();
    admin
        .enroll_otp(pb::EnrollOtpRequest {
            secret: secret.0.to_vec(),
        })
        .await
        .expect("an operator enrolls their own secret");
    let now = recall_core::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    let valid: Vec<String> = [-30_000, 0, 30_000]
        .map(|d| secret.code_at(recall_core::Timestamp::from_millis(now.as_millis() + d)))
        .to_vec();
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    refused(
        admin.lift(with_otp(&wrong, lift_one("a"))).await,
        "wrong or not current",
    );
    let code = secret.code_at(now);
    let r = admin
        .lift(with_otp(&code, lift_one("a")))
        .await
        .expect("a current code lifts")
        .into_inner();
    assert_eq!(r.removed, 1);
    // The same code does not work twice, not even for another command.
    refused(
        admin.lift(with_otp(&code, lift_one("b"))).await,
        "already used",
    );
    // Replacing a secret needs a code of the old one.
    let s = admin
        .enroll_otp(pb::EnrollOtpRequest {
            secret: OtpSecret::generate().0.to_vec(),
        })
        .await
        .expect_err("refused");
    assert!(
        s.message().contains("already has a one-time-code secret"),
        "{}",
        s.message()
    );

    let st = status(&mut admin).await.unwrap();
    assert_eq!(st.entries, 1, "only the lift with a good code took effect");
    // The history records the enrollment and the coded lift, and never the secret.
    let history = audit_log(&mut admin).await;
    assert!(
        history
            .iter()
            .any(|h| h.command.contains("enroll a one-time-code secret"))
    );
    assert!(
        history
            .iter()
            .any(|h| h.command.contains("(with a one-time code)"))
    );
    let b32 = secret.base32();
    for h in &history {
        assert!(
            !h.command.contains(&b32) && !h.reason.contains(&b32),
            "{h:?}"
        );
    }
}

/// A membership change on the production policy waits for a second admin like any other, the
/// history names both, and once approved the leader carries it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_waits_for_a_second_admin_and_the_leader_carries_it_out() {
    let cluster = Cluster::start_with(1, |c| c.step_up = StepUpPolicy::production()).await;
    leader(&cluster).await;
    let mut admin = cluster.client(1);
    seeded(&mut admin).await;
    grant(&mut admin, &op("bob"), "admin").await.unwrap();
    let mut bob = client_as(cluster.addr(1), operator("bob"));

    let add = pb::AddLearnerRequest {
        node_id: 9,
        address: "127.0.0.1:1".into(),
    };
    let s = refused(
        admin.add_learner(add).await,
        "a membership change needs a second operator's approval",
    );
    let id = s
        .metadata()
        .get("recall-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let req = pending_one(&mut bob, &id).await;
    assert_eq!(
        req.command,
        "membership: add node 9 at 127.0.0.1:1 as a learner"
    );
    approve(&mut bob, &id, &req.command_hash)
        .await
        .expect("a second admin approves");
    crate::fixture::eventually(
        "the leader to add the learner",
        crate::fixture::PATIENCE,
        || {
            let mut c = admin.clone();
            async move {
                let s = status(&mut c).await.map_err(|e| e.message().to_string())?;
                if s.members.iter().any(|m| m.node_id == 9) {
                    Ok(())
                } else {
                    Err(format!("{:?}", s.members))
                }
            }
        },
    )
    .await;
    let history = audit_log(&mut admin).await;
    let approval = history
        .iter()
        .find(|h| h.command.starts_with(&format!("approve request {id}")))
        .expect("the approval is in the history");
    assert_eq!(approval.actor, op("bob"));
    assert!(
        approval.command.contains("membership: add node 9"),
        "{}",
        approval.command
    );
}
