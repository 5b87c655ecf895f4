//! The chaos harness in its small configuration, as CI runs it: 10k revocations to 3 sidecars,
//! with no fault, with the leader SIGKILLed mid-recall, with one sidecar partitioned and healed,
//! with a follower node cut off from its peers, and with faults on the links between nodes: the
//! leader partitioned from one follower, the leader isolated from both while its sidecars still
//! reach it (a minority leader), and everything one follower sends the leader lost; with a
//! sidecar restarted from a truncated and then a corrupted state file, and with a not-before rule
//! written to the leader while it is isolated; etcd (3 members) and Redis go through the no-fault
//! and partition scenarios beside it.
//! While each recall scenario runs, checkers ask every sidecar about acknowledged, never-revoked
//! and lifted tokens every 10 ms; the history of answers must keep every rule (0 violations).
//! Real processes on loopback: `recall server`, `recall sidecar`, `etcd`, `redis-server`
//! (`scripts/deps.sh` installs the last two).

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressDrawTarget};
use recall_chaos::authority::RaftTiming;
use recall_chaos::history::live::LiveConfig;
use recall_chaos::report::model::SystemRun;
use recall_chaos::run::{RunConfig, System, run};
use recall_chaos::scenario::Scenario;
use recall_chaos::scenario::runner::RecallSettings;

const REVOCATIONS: u64 = 10_000;
const SIDECARS: usize = 3;
/// The sidecars' staleness bound (shorter than their 10 s default, so the run proves a tight
/// one holds): the live history allows no "allowed" for a revocation acknowledged longer ago.
const STALENESS_BOUND: Duration = Duration::from_secs(3);
/// How late a live check can see a refusal that began at some instant: the checkers' period
/// (10 ms) plus one check's round trip, generous for a loaded 2-core CI machine.
const CHECK_RESOLUTION: Duration = Duration::from_millis(250);

fn find<'a>(results: &'a [SystemRun], system: &str, scenario: Scenario) -> &'a SystemRun {
    results
        .iter()
        .find(|r| r.system == system && r.scenario == scenario.name())
        .unwrap_or_else(|| panic!("no result for {system} {}", scenario.name()))
}

#[test]
fn recall_loses_nothing_and_every_live_answer_keeps_the_rules_under_a_leader_kill_and_partitions_of_sidecars_and_nodes_while_pubsub_loses()
 {
    for bin in ["/usr/bin/etcd", "/usr/bin/redis-server"] {
        assert!(
            PathBuf::from(bin).is_file(),
            "{bin} is missing: run `bash scripts/deps.sh` (the test command does)"
        );
    }
    let data = tempfile::tempdir().unwrap();
    let scenarios = vec![
        Scenario::NoFault,
        Scenario::LeaderKill,
        Scenario::SidecarPartition,
        Scenario::NodeCutOff,
        Scenario::LeaderPartition,
        Scenario::MinorityLeader,
        Scenario::OneWayLink,
        Scenario::CorruptState,
        Scenario::IsolatedLeaderRule,
    ];
    let cfg = RunConfig {
        seed: 20_261_123,
        revocations: REVOCATIONS,
        scenarios: scenarios.clone(),
        systems: vec![System::Recall, System::Etcd, System::Redis],
        recall: RecallSettings {
            recall_bin: PathBuf::from(env!("CARGO_BIN_EXE_recall")),
            dir: data.path().to_path_buf(),
            sidecars: SIDECARS,
            batch: 1000,
            in_flight: 4,
            timing: RaftTiming::default(),
            settle: Duration::from_secs(60),
            hold: Duration::from_secs(2),
            latency: Duration::from_millis(100),
            sample: 10_000,
            staleness_bound: STALENESS_BOUND,
            live: LiveConfig::default(),
            progress: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        },
        etcd_bin: "/usr/bin/etcd".into(),
        redis_bin: "/usr/bin/redis-server".into(),
        command: "cargo test --test chaos".into(),
    };
    let report = tokio::runtime::Runtime::new().unwrap().block_on(run(&cfg));
    let table = recall_chaos::report::table::markdown(&report);
    println!("{table}");

    // Every recall scenario converged, lost nothing, and its fault provably happened.
    for &s in &scenarios {
        let r = find(&report.results, "recall", s);
        assert!(
            r.failures.is_empty(),
            "recall {}: {:?}",
            s.name(),
            r.failures
        );
        assert!(r.converged && r.lost == 0, "recall {}", s.name());
        assert_eq!(r.subscribers.len(), SIDECARS);
        let checks = r.checks.as_ref().expect("recall results carry checks");
        assert!(checks.digests_equal);
        assert_eq!(checks.revoked_missed, 0);
        assert!(checks.revoked_sampled >= 10_000 * SIDECARS as u64);
        assert_eq!(checks.false_positives, 0);
        assert!(r.faults.iter().all(|f| f.took_effect), "{:?}", r.faults);
        assert!(r.views_max_diff_ms.is_some(), "both views measured");
        // Every answer while the wave landed kept the rules, and there were answers of every
        // kind to judge: acknowledged revocations, never-revoked and lifted credentials.
        let h = r
            .history
            .as_ref()
            .expect("recall results carry a live history");
        assert_eq!(
            h.violations.total(),
            0,
            "recall {}: {:?}",
            s.name(),
            h.first
        );
        assert!(
            h.answers.revoked > 1000,
            "recall {}: {:?}",
            s.name(),
            h.answers
        );
        assert!(h.answers.never_revoked > 1000, "{:?}", h.answers);
        assert!(h.answers.lifted > 0, "{:?}", h.answers);
        assert_eq!(h.lifts, 4);
        // Every watched revocation was seen refused on every sidecar, and its window is within
        // the staleness bound: the rules above already prove no sidecar allowed it past the
        // bound; the window ends at the first refusal seen, so it may exceed the bound by the
        // checks' resolution (one period plus one check's round trip on a loaded CI machine).
        let w = &h.exposure_checks;
        assert!(
            w.sampled > 0 && w.enforced == w.sampled,
            "recall {}: {w:?}",
            s.name()
        );
        let max = w.ms.expect("windows measured").max;
        assert!(
            max < (STALENESS_BOUND + CHECK_RESOLUTION).as_secs_f64() * 1e3,
            "recall {}: {w:?}",
            s.name()
        );
        // By the sidecars' own reports, every write reached every sidecar, and each
        // sidecar's share of the wave climbed to all of it.
        let e = r.exposure.as_ref().expect("recall measures exposure");
        assert!(
            e.sampled > 0 && e.enforced == e.sampled,
            "recall {}: {e:?}",
            s.name()
        );
        for sub in &r.subscribers {
            assert_eq!(
                sub.held.last().map(|p| p.1),
                Some(1.0),
                "{}: {:?}",
                sub.id,
                sub.held
            );
        }
    }
    assert!(
        find(&report.results, "recall", Scenario::LeaderKill).faults[0]
            .proof
            .contains("signal 9")
    );
    // A node cut off from the leader (a partitioned follower, a minority leader, a follower
    // whose answers never reach the leader) stopped vouching for its state: its sidecars said
    // stale (failing closed) instead of answering from a frozen state as if it were current.
    for s in [
        Scenario::LeaderPartition,
        Scenario::MinorityLeader,
        Scenario::OneWayLink,
    ] {
        let r = find(&report.results, "recall", s);
        let h = r.history.as_ref().expect("a live history");
        assert!(h.answers.stale > 0, "recall {}: {:?}", s.name(), h.answers);
    }
    // A sidecar given a damaged state file refused it, said why, and started cold (twice).
    let corrupt = find(&report.results, "recall", Scenario::CorruptState);
    assert_eq!(corrupt.faults.len(), 2, "{:?}", corrupt.faults);
    for f in &corrupt.faults {
        assert!(f.proof.contains("fails its checksum"), "{f:?}");
    }
    // The rule written through the majority while the leader was isolated is enforced by every
    // sidecar; the isolated leader acknowledged nothing (or, if it did, every sidecar enforces
    // that rule too: the scenario fails otherwise).
    let rule = find(&report.results, "recall", Scenario::IsolatedLeaderRule);
    let checks = rule.checks.as_ref().expect("checks");
    assert!(
        checks.rule_sampled > 0 && checks.rule_missed == 0,
        "{checks:?}"
    );
    assert!(
        rule.faults[0].proof.contains("did not acknowledge"),
        "{:?}",
        rule.faults
    );
    let minority = find(&report.results, "recall", Scenario::MinorityLeader);
    assert!(
        minority.faults[0].proof.contains("elected node"),
        "{:?}",
        minority.faults
    );

    // etcd's watch resumes from a revision: nothing lost, with or without the partition, and
    // every write has an exposure window.
    for s in [Scenario::NoFault, Scenario::SidecarPartition] {
        let r = find(&report.results, "etcd", s);
        let e = r.exposure.as_ref().expect("etcd measures exposure");
        assert!(
            e.sampled > 0 && e.enforced == e.sampled,
            "etcd {}: {e:?}",
            s.name()
        );
        assert!(r.failures.is_empty(), "etcd {}: {:?}", s.name(), r.failures);
        assert!(
            r.converged && r.lost == 0,
            "etcd {}: lost {}",
            s.name(),
            r.lost
        );
    }
    // Redis pub/sub delivers everything to connected subscribers, and drops what was published
    // while one was cut off.
    let calm = find(&report.results, "redis", Scenario::NoFault);
    assert!(
        calm.converged && calm.lost == 0,
        "redis no-fault lost {}",
        calm.lost
    );
    let cut = find(&report.results, "redis", Scenario::SidecarPartition);
    assert!(cut.failures.is_empty(), "{:?}", cut.failures);
    assert!(
        !cut.converged && cut.lost > 0,
        "redis pub/sub lost nothing across a partition?"
    );
    // What was lost shows in both pictures: writes the victim never held have no window, and
    // its share of the wave never reaches 1.
    let e = cut.exposure.as_ref().expect("redis measures exposure");
    assert!(e.enforced < e.sampled, "{e:?}");
    assert!(
        cut.subscribers
            .iter()
            .any(|s| s.held.last().is_some_and(|p| p.1 < 1.0)),
        "{:?}",
        cut.subscribers
    );

    // The outputs a user reads.
    let out = data.path().join("results");
    let files = recall_chaos::report::write::write_all(&report, &out).unwrap();
    for name in [
        "results.json",
        "results.md",
        "convergence-leader-kill.svg",
        "held-leader-kill.svg",
        "exposure-leader-kill.svg",
        "exposure-sidecar-partition.svg",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "{name} not written"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        json["results"].as_array().unwrap().len(),
        scenarios.len() + 2 * 2
    );
    assert!(table.contains("leader-kill"));
}
