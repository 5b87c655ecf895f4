//! The live page `/ui`, as an operator's browser shows it: three `recall server` processes, a
//! subscriber following one of them, a revocation, and Debian's Chromium (headless, installed by
//! `scripts/deps.sh`) rendering the page after its scripts ran. The page shows the node's last
//! change, the subscriber holding it, and the wave's bar in the chart; a screenshot is taken
//! (set `RECALL_UI_SCREENSHOT=PATH` to keep a copy, as docs/ui-wave.png was made).

use std::process::Command;

use recall::subscriber::{Subscriber, SubscriberConfig};
use recall::transport::{DEV_TRUST_DOMAIN, Identity};

use crate::fixture::{PATIENCE, Procs, converged, eventually, leader, revoke_range, security};

/// Headless Chromium with the flags this machine's closed network needs.
fn chromium(profile: &std::path::Path) -> Command {
    let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: run `bash scripts/deps.sh` (bash scripts/test.sh does)"
            )
        });
    let mut c = Command::new(binary);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_the_wave_landing_at_the_subscriber() {
    let procs = Procs::start(3, &[]);
    let l = leader(&procs).await;
    let mut lead = procs.client(l);
    let first = lead
        .revoke(revoke_range("ui", 0..1))
        .await
        .unwrap()
        .into_inner()
        .version;
    converged(&procs, first).await;

    let id = "ui-sidecar";
    let config = SubscriberConfig::new(
        vec![procs.addr(l).to_string()],
        id,
        security(&Identity::subscriber(DEV_TRUST_DOMAIN, id)),
    );
    let sub = Subscriber::start(config).await.unwrap();
    sub.wait_version(first, PATIENCE).await.unwrap();
    // Waves of different sizes, each landing before the next.
    let mut wave = first;
    for (i, size) in [10, 1_000, 100, 5_000, 1, 2_000].into_iter().enumerate() {
        wave = lead
            .revoke(revoke_range(&format!("ui-wave-{i}"), 0..size))
            .await
            .unwrap()
            .into_inner()
            .version;
        sub.wait_version(wave, PATIENCE).await.unwrap();
    }

    let page = format!("http://{}/ui", procs.http(l));
    let state = format!("http://{}/ui/state", procs.http(l));
    eventually("the node to record the landed wave", PATIENCE, || async {
        let s = reqwest::get(&state)
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        s.contains(&format!("\"version\":{wave}"))
            .then_some(())
            .ok_or(s)
    })
    .await;
    let headers = reqwest::get(&page).await.unwrap().headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");

    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let (page, profile) = (page.clone(), dir.path().join("profile"));
        move || {
            chromium(&profile)
                .args(["--virtual-time-budget=5000", "--dump-dom"])
                .arg(&page)
                .output()
                .expect("chromium runs")
        }
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let shows = |what: &str| {
        assert!(
            dom.contains(what),
            "the rendered page lacks {what:?}:\n{dom}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    shows("data-ready=\"true\"");
    shows(&format!("<span id=\"last-change\">{wave}</span>"));
    shows(&format!("<tr data-subscriber=\"{id}\">"));
    shows(&format!("data-version=\"{wave}\""));
    shows("1 of 1 subscribers hold version");

    let png = dir.path().join("ui.png");
    let shot = tokio::task::spawn_blocking({
        let (page, profile, png) = (page.clone(), dir.path().join("profile-2"), png.clone());
        move || {
            chromium(&profile)
                .args(["--virtual-time-budget=5000", "--window-size=1000,860"])
                .arg(format!("--screenshot={}", png.display()))
                .arg(&page)
                .output()
                .expect("chromium runs")
        }
    })
    .await
    .unwrap();
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
    if let Some(keep) = std::env::var_os("RECALL_UI_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
    sub.shutdown().await;
}
