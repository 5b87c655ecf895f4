//! The operator commands of the real `recall` binary against a running node: revoke, rule, lift,
//! status, audit verify and log do what they say; `recall import` checks a whole file first,
//! refuses it (exit code non-zero, nothing imported) when a line is bad and names that line as
//! `FILE:LINE:`, imports the rest with `--skip-invalid`, and is idempotent when run again.

use std::path::Path;

use crate::fixture::{Cluster, ISSUER, leader, pki, status};

/// What one run of the binary printed, and whether it succeeded.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `recall ARGS --cluster ADDR --pki DIR` (the operator flags go last), as the admin.
pub async fn recall(addr: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_recall"))
        .args(args)
        .args(["--cluster", addr])
        .arg("--pki")
        .arg(pki().dir.path())
        .env_remove("RECALL_CLUSTER")
        .output()
        .await
        .expect("runs the recall binary");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the binary and fails the test if the command failed.
async fn ok(addr: &str, args: &[&str]) -> String {
    let run = recall(addr, args).await;
    assert!(
        run.ok,
        "recall {args:?} failed: {}{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// One node, started and led; returns it and its address.
async fn node() -> (Cluster, String) {
    let cluster = Cluster::start(1).await;
    leader(&cluster).await;
    let addr = cluster.addr(1).to_string();
    (cluster, addr)
}

/// Revoke, rule, lift, status, audit verify and audit log through the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_write_and_read_the_cluster() {
    let (_cluster, addr) = node().await;
    let who = ["--actor", "alice", "--reason", "INC-42"];

    let revoke = [
        &[
            "revoke", "--kind", "token", "--ns", ISSUER, "jti-1", "jti-2",
        ],
        &who[..],
    ];
    let out = ok(&addr, &revoke.concat()).await;
    assert!(out.starts_with("revoked: 2 new"), "{out}");
    let out = ok(&addr, &revoke.concat()).await;
    assert!(
        out.starts_with("revoked: 0 new, 2 already in effect"),
        "{out}"
    );

    let rule = [
        &[
            "rule", "--scope", "subject", "--ns", ISSUER, "--value", "bob",
        ],
        &who[..],
    ];
    let out = ok(&addr, &rule.concat()).await;
    assert!(out.starts_with("rule: 1 new"), "{out}");

    let lift = [
        &["lift", "--kind", "token", "--ns", ISSUER, "jti-1", "jti-9"],
        &who[..],
    ];
    let out = ok(&addr, &lift.concat()).await;
    assert!(out.contains("1 removed, 1 not found"), "{out}");

    let out = ok(&addr, &["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
    assert_eq!(status["entries"], 1, "{out}");
    assert_eq!(status["rules"], 1, "{out}");
    assert_eq!(status["leader"], 1, "{out}");

    let out = ok(&addr, &["audit", "verify"]).await;
    // The first admin's binding, then the four writes.
    assert!(out.starts_with("ok: 5 records verified"), "{out}");
    let out = ok(&addr, &["audit", "log"]).await;
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.lines().next().unwrap().contains("to role admin"),
        "{out}"
    );
    // The actor of record is the certificate's identity; --actor is the "on behalf of" note.
    assert!(
        out.lines().skip(1).all(
            |l| l.contains("spiffe://recall.local/operator/admin for alice")
                && l.contains("INC-42")
        ),
        "{out}"
    );

    let bad = recall(&addr, &["revoke", "--kind", "tokn", "--ns", ISSUER, "x"]).await;
    assert!(!bad.ok);
    assert!(bad.stderr.contains("tokn"), "{}", bad.stderr);
}

/// Writes an import file with a header and `lines`.
fn csv(path: &Path, lines: &[&str]) {
    let mut text = String::from("kind,namespace,value,expires_at\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(path, text).expect("writes the import file");
}

/// A file with one bad line is refused whole, naming the line; `--skip-invalid` imports the
/// rest; the same import again changes nothing and says everything was already revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_checks_every_line_first_and_is_idempotent() {
    let (cluster, addr) = node().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("denylist.csv");
    csv(
        &file,
        &[
            &format!("token,{ISSUER},jti-1,"),
            &format!("session,{ISSUER},sid-1,now+1h"),
            &format!("tokn,{ISSUER},jti-2,"),
            &format!("subject,{ISSUER},carol,"),
            &format!("token,{ISSUER},jti-3,1"),
        ],
    );
    let path = file.to_str().unwrap();
    let import = ["import", path, "--quiet", "--actor", "ops"];

    let refused = recall(&addr, &import).await;
    assert!(!refused.ok, "a file with bad lines is refused");
    assert!(
        refused.stderr.contains(&format!("{path}:4:")),
        "the bad kind is on line 4: {}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(&format!("{path}:6:")),
        "the past expiry is on line 6: {}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("nothing was imported"),
        "{}",
        refused.stderr
    );
    let s = status(&mut cluster.client(1)).await.unwrap();
    assert_eq!(s.entries, 0, "nothing was imported");

    let skipping = [&import[..], &["--skip-invalid"]].concat();
    let out = ok(&addr, &skipping).await;
    assert!(
        out.contains("3 new, 0 already revoked, 2 skipped as invalid"),
        "{out}"
    );
    assert_eq!(status(&mut cluster.client(1)).await.unwrap().entries, 3);

    let out = ok(&addr, &skipping).await;
    assert!(
        out.contains("0 new, 3 already revoked, 2 skipped as invalid"),
        "{out}"
    );
    assert_eq!(status(&mut cluster.client(1)).await.unwrap().entries, 3);
}

/// A node started without certificates refuses to start and says how to make them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_certificates_refuses_to_start_and_says_how_to_make_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_recall"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--pki")
        .arg(dir.path().join("no-pki-here"))
        .env_remove("RECALL_PKI")
        .output()
        .await
        .expect("runs the recall binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("recall pki init") && stderr.contains("node-1.pem"),
        "{stderr}"
    );
}

/// A node configured with a per-subscriber queue too small to hold one message refuses to
/// start, naming the setting and its range, before it writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_queue_too_small_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_recall"))
        .args(["server", "--id", "1", "--stream-queue-bytes", "100"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .await
        .expect("runs the recall binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stream_queue_bytes: must be between 65536 (64 KiB) and 67108864"),
        "{stderr}"
    );
    assert!(!data.exists(), "a refused configuration wrote nothing");
}

/// A node told to dial itself, or given a dial address that is not `HOST:PORT`, refuses to
/// start, naming `peer_dial` and what is wrong, before it writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dial_address_for_itself_or_without_a_port_is_refused_by_name() {
    for (dial, says) in [
        (
            "2=127.0.0.1:7171,1=127.0.0.1:7172",
            "peer_dial: names this node's own id 1",
        ),
        (
            "2=127.0.0.1",
            "peer_dial: 2=\"127.0.0.1\" is not ID=HOST:PORT",
        ),
        (
            "two=127.0.0.1:7171",
            "--peer-dial (peer_dial in the file): \"two\" is not a node id",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_recall"))
            .args(["server", "--id", "1", "--peer-dial", dial])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .await
            .expect("runs the recall binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{dial}: {stderr}");
        assert!(stderr.contains(says), "{dial}: {stderr}");
        assert!(
            !data.exists(),
            "{dial}: a refused configuration wrote nothing"
        );
    }
}

/// With the production policy, `recall lift` is not applied on one operator's word: it says
/// which command a second operator must run, `recall pending` lists the request, the proposer's
/// own `recall approve` is refused, and a second admin's applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_how_to_get_a_lift_approved_and_a_second_operator_approves_it() {
    use recall::transport::{DEV_TRUST_DOMAIN, Identity};
    let bob = Identity::operator(DEV_TRUST_DOMAIN, "bob");
    pki()
        .ca
        .issue_into(pki().dir.path(), &bob)
        .expect("issues bob's certificate");
    let cluster = Cluster::start_with(1, |c| {
        c.step_up = recall::node::stepup::StepUpPolicy::production()
    })
    .await;
    leader(&cluster).await;
    let addr = cluster.addr(1).to_string();
    crate::fixture::eventually("the cluster's seed", crate::fixture::PATIENCE, || {
        let addr = addr.clone();
        async move {
            let run = recall(
                &addr,
                &["revoke", "--kind", "token", "--ns", ISSUER, "leaked"],
            )
            .await;
            if run.ok { Ok(()) } else { Err(run.stderr) }
        }
    })
    .await;
    ok(&addr, &["roles", "grant", "bob", "admin"]).await;
    assert!(
        ok(&addr, &["policy", "show"])
            .await
            .contains("lift       two_person")
    );

    let lift = recall(
        &addr,
        &["lift", "--kind", "token", "--ns", ISSUER, "leaked"],
    )
    .await;
    assert!(!lift.ok, "{}", lift.stdout);
    let says = "lift needs a second operator's approval: ask them to run 'recall approve ";
    let at = lift
        .stderr
        .find(says)
        .unwrap_or_else(|| panic!("{}", lift.stderr));
    assert!(lift.stderr.contains("within 10m"), "{}", lift.stderr);
    let id = lift.stderr[at + says.len()..][..16].to_string();

    let listed = ok(&addr, &["pending"]).await;
    assert!(
        listed.contains(&id) && listed.contains("proposed by spiffe://recall.local/operator/admin"),
        "{listed}"
    );
    let own = recall(&addr, &["approve", &id]).await;
    assert!(
        !own.ok && own.stderr.contains("cannot approve it"),
        "{}",
        own.stderr
    );
    let approved = ok(&addr, &["approve", &id, "--as", "bob"]).await;
    assert!(
        approved.contains(&format!("approving request {id}: lift")),
        "{approved}"
    );
    assert!(approved.contains("1 removed"), "{approved}");
    assert_eq!(status(&mut cluster.client(1)).await.unwrap().entries, 0);
    assert!(
        ok(&addr, &["pending"])
            .await
            .contains("no pending requests")
    );
}

/// `recall audit export`, `recall audit keys` and `recall audit verify --file --trust`: the
/// history leaves the cluster as a file and verifies with no server; an edited file names the
/// version where it was changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_history_verifies_offline_and_an_edit_is_named() {
    let cluster = Cluster::start_with(3, |c| {
        c.checkpoint_interval = std::time::Duration::from_millis(100)
    })
    .await;
    leader(&cluster).await;
    crate::fixture::keys_bound(&cluster, 3).await;
    let addr = cluster.addr(1).to_string();
    ok(
        &addr,
        &["revoke", "--kind", "token", "--ns", ISSUER, "a", "b"],
    )
    .await;
    crate::fixture::eventually(
        "a quorum to witness the head",
        crate::fixture::PATIENCE,
        || {
            let mut c = cluster.client(1);
            async move {
                let s = status(&mut c).await.map_err(|e| e.message().to_string())?;
                if s.witnessed_version == s.history_version {
                    Ok(())
                } else {
                    Err(format!("{s:?}"))
                }
            }
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    let keys = dir.path().join("keys.txt");
    let out = ok(&addr, &["audit", "export", "-o", file.to_str().unwrap()]).await;
    assert!(out.contains("witnessed checkpoints"), "{out}");
    std::fs::write(&keys, ok(&addr, &["audit", "keys"]).await).unwrap();
    let verify = [
        "audit",
        "verify",
        "--file",
        file.to_str().unwrap(),
        "--trust",
        keys.to_str().unwrap(),
    ];
    let out = ok(&addr, &verify).await;
    assert!(
        out.starts_with("ok: ")
            && out.contains("replaying the commands gives the signed set digests"),
        "{out}"
    );

    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("\"value\":\"b\"", "\"value\":\"c\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();
    let run = recall(&addr, &verify).await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("the history does not verify at version"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the command kept with this record does not hash"),
        "{}",
        run.stderr
    );
}
