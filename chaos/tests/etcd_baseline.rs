//! The etcd baseline measures a working etcd: 5,000 revocations written to a real 3-member
//! cluster reach every watcher, including one whose link is partitioned for a second in the
//! middle of the writes (it reconnects and etcd replays what it missed), and the partition
//! provably happened.

use std::path::Path;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressDrawTarget};
use recall_chaos::baseline::{BaselineConfig, BaselineFault, etcd};
use recall_chaos::workload::Workload;

const ETCD: &str = "/usr/bin/etcd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watcher_holds_every_revocation_after_a_partition() {
    let etcd_bin = Path::new(ETCD);
    if !etcd_bin.exists() {
        eprintln!("skipped: {ETCD} is missing (scripts/deps.sh installs it)");
        return;
    }
    let work = tempfile::tempdir().expect("temporary directory");
    let cfg = BaselineConfig {
        subscribers: 3,
        batch: 500,
        in_flight: 4,
        settle: Duration::from_secs(20),
        work_dir: work.path().to_path_buf(),
        progress: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
    };
    let fault = BaselineFault::SubscriberPartition {
        victim: 1,
        after: 2_000,
        hold: Duration::from_secs(1),
    };
    let workload = Workload::new(7, 5_000);

    let run = etcd::run(&cfg, fault, &workload, etcd_bin)
        .await
        .expect("the etcd baseline runs");

    assert!(run.converged, "not every watcher converged: {run:#?}");
    assert_eq!(run.lost, 0, "revocations lost: {run:#?}");
    assert_eq!(run.faults.len(), 1, "one fault injected: {run:#?}");
    assert!(
        run.faults[0].took_effect,
        "the partition dropped nothing: {run:#?}"
    );
    assert!(
        run.subscribers.iter().all(|s| s.converged_ms.is_some()),
        "a watcher never held everything: {run:#?}"
    );
    assert!(run.failures.is_empty(), "failures: {run:#?}");
}
