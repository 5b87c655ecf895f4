//! A node's `Check` answers from its exact state, over the same mutual TLS as every client-port
//! service, to subscribers and to operators holding a role; an operator without a role and
//! another node are refused, each refusal saying who was seen and what would do. A batch is
//! answered from one state, and bad facts are refused with the field named.

use recall::proto as pb;
use recall::proto::check_client::CheckClient;
use recall::transport::{DEV_TRUST_DOMAIN, Dialer, Expect, Identity, Security};
use tonic::Code;
use tonic::transport::Channel;

use crate::fixture::{
    Cluster, ISSUER, converged, leader, node_security, operator, revoke_range, security,
};

fn checker(addr: &str, security: Security) -> CheckClient<Channel> {
    let channel = Dialer::new(security)
        .lazy(addr, Expect::AnyNode)
        .expect("a valid address");
    CheckClient::new(channel)
}

fn facts(jti: &str) -> pb::TokenFacts {
    pb::TokenFacts {
        iss: ISSUER.into(),
        jti: Some(jti.into()),
        ..Default::default()
    }
}

fn one(jti: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        facts: Some(facts(jti)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_check_to_subscribers_and_operators_with_a_role_only() {
    let cluster = Cluster::start(1).await;
    let l = leader(&cluster).await;
    let v = cluster
        .client(l)
        .revoke(revoke_range("chk", 0..2))
        .await
        .unwrap()
        .into_inner()
        .version;
    converged(&cluster, v).await;
    let addr = cluster.addr(l);

    let subscriber = security(&Identity::subscriber(DEV_TRUST_DOMAIN, "checker"));
    let mut sub = checker(addr, subscriber);
    let r = sub.check(one("chk-1")).await.unwrap().into_inner();
    assert_eq!(r.verdict, pb::Verdict::Revoked as i32, "{r:?}");
    assert!(r.version >= v && !r.stale, "{r:?}");
    assert_eq!(r.source, pb::Source::Local as i32);
    assert!(matches!(
        &r.matches[..],
        [pb::Match { of: Some(pb::r#match::Of::Entry(e)) }] if e.exact && e.namespace == ISSUER
    ));
    let r = sub.check(one("chk-9")).await.unwrap().into_inner();
    assert_eq!(r.verdict, pb::Verdict::Allowed as i32, "{r:?}");

    let batch = sub
        .check_batch(pb::CheckBatchRequest {
            facts: vec![facts("chk-0"), facts("other"), facts("chk-1")],
        })
        .await
        .unwrap()
        .into_inner()
        .replies;
    let verdicts: Vec<i32> = batch.iter().map(|r| r.verdict).collect();
    let (revoked, allowed) = (pb::Verdict::Revoked as i32, pb::Verdict::Allowed as i32);
    assert_eq!(verdicts, [revoked, allowed, revoked]);
    assert!(batch.iter().all(|r| r.version == batch[0].version));

    // The admin holds a role; an operator without one, and a node, are refused.
    let r = checker(addr, operator("admin")).check(one("chk-0")).await;
    assert_eq!(r.unwrap().into_inner().verdict, revoked);
    let s = checker(addr, operator("nobody"))
        .check(one("chk-0"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(
        s.message().contains("needs the viewer role") && s.message().contains("operator/nobody"),
        "{}",
        s.message()
    );
    let s = checker(addr, node_security(2))
        .check(one("chk-0"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("node/2 is neither"), "{}", s.message());

    // Bad facts are refused with the field named.
    let s = sub
        .check(pb::CheckRequest {
            facts: Some(pb::TokenFacts {
                iat: Some(1_700_000_000_000),
                ..facts("chk-0")
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("facts.iat"), "{}", s.message());
}
