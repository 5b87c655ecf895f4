//! Bad input gets a clear error and a failing exit: a URL that is not a Redis URL, and a Redis
//! that does not answer at start.

use std::time::Duration;

use super::support::{free_port, mirror_certs};

async fn mirror(redis: &str, dir: &std::path::Path) -> (bool, String) {
    let certs = mirror_certs(dir);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_recall"))
            .args(["mirror", "--redis", redis, "--redis-wait", "1s"])
            .args(["--cluster", "127.0.0.1:1"])
            .arg("--ca")
            .arg(&certs.ca)
            .arg("--cert")
            .arg(&certs.cert)
            .arg("--key")
            .arg(&certs.key)
            .env_remove("RECALL_CLUSTER")
            .output(),
    )
    .await
    .expect("recall mirror gave up in time")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_wrong_url_or_an_unreachable_redis_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = mirror("http://127.0.0.1:6379", dir.path()).await;
    assert!(!ok);
    assert!(err.contains("is not a Redis URL"), "{err}");

    let url = format!("redis://:secret@127.0.0.1:{}/", free_port());
    let (ok, err) = mirror(&url, dir.path()).await;
    assert!(!ok);
    assert!(err.contains("is redis-server running there?"), "{err}");
    assert!(!err.contains("secret"), "the password is not shown: {err}");
}
