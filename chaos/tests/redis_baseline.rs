//! The Redis pub/sub baseline against a real `redis-server`: without faults every subscriber
//! receives every revocation; a subscriber partitioned mid-recall reconnects and SUBSCRIBEs
//! again, but what was published while it was away is lost for good (pub/sub has no replay),
//! and the result counts that loss against it alone.
//!
//! Needs `redis-server` (Debian's `redis-server` package) at `/usr/bin/redis-server`, or its
//! path in `REDIS_SERVER`.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressDrawTarget};
use recall_chaos::baseline::{self, BaselineConfig, BaselineFault};
use recall_chaos::workload::Workload;
use tokio::sync::Mutex;

/// The two scenarios measure time: they run one at a time, not side by side on 2 cores.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn redis_server() -> PathBuf {
    let path = std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    assert!(
        path.exists(),
        "{} not found: install redis-server (apt-get install redis-server) or set REDIS_SERVER",
        path.display()
    );
    path
}

fn config(dir: &tempfile::TempDir, batch: usize) -> BaselineConfig {
    BaselineConfig {
        subscribers: 3,
        batch,
        in_flight: 4,
        settle: Duration::from_secs(5),
        work_dir: dir.path().to_path_buf(),
        progress: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
    }
}

/// Without faults, every subscriber holds every revocation: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_faults_every_subscriber_gets_everything() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let workload = Workload::new(7, 5_000);
    let run = baseline::redis::run(
        &config(&dir, 500),
        BaselineFault::None,
        &workload,
        &redis_server(),
    )
    .await
    .unwrap();
    eprintln!("{run:#?}");
    assert_eq!(run.system, "redis");
    assert_eq!(run.scenario, "no-fault");
    assert!(run.converged, "not converged: {:?}", run.subscribers);
    assert_eq!(run.lost, 0);
    assert_eq!(run.subscribers.len(), 3);
    assert!(run.convergence_ms.is_some());
    assert!(run.failures.is_empty(), "{:?}", run.failures);
}

/// A subscriber partitioned for 1 s mid-recall loses what was published meanwhile, for good;
/// the others lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_subscriber_loses_what_was_published_meanwhile() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let workload = Workload::new(8, 50_000);
    let fault = BaselineFault::SubscriberPartition {
        victim: 1,
        after: 1_000,
        hold: Duration::from_secs(1),
    };
    let run = baseline::redis::run(&config(&dir, 500), fault, &workload, &redis_server())
        .await
        .unwrap();
    eprintln!("{run:#?}");
    assert_eq!(run.scenario, "sidecar-partition");
    assert_eq!(run.faults.len(), 1);
    let f = &run.faults[0];
    assert!(f.took_effect, "{f:?}");
    assert!(
        f.proof.contains("reconnected") && !f.proof.contains("reconnected 0 "),
        "the victim never reconnected: {f:?}"
    );
    assert!(
        run.write_ms > f.at_ms,
        "the writes ended ({:.0} ms) before the partition began ({:.0} ms)",
        run.write_ms,
        f.at_ms
    );
    assert!(!run.converged);
    let victim = &run.subscribers[1];
    assert!(victim.missing > 0, "{victim:?}");
    assert!(victim.converged_ms.is_none());
    for (i, s) in run.subscribers.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(s.missing, 0, "subscriber {i}: {s:?}");
    }
    assert_eq!(run.lost, victim.missing);
    assert!(run.failures.is_empty(), "{:?}", run.failures);
}
