//! Sending the sightings to the cluster: the node followed now first, then the others; what no
//! node took waits for the next report.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::Channel;

use super::{MAX_PER_REPORT, Sightings};
use crate::proto as pb;
use crate::proto::sightings_client::SightingsClient;
use crate::transport::{Dialer, Expect, Security};

/// Sends the counts to the cluster every `interval`, to the node followed now first and then the
/// others in turn; what no node took is put back for the next report. A last report is sent when
/// `stopped` turns true (within a second).
pub async fn report(
    sightings: std::sync::Arc<Sightings>,
    cluster: Vec<String>,
    security: Security,
    interval: Duration,
    following: watch::Receiver<crate::subscriber::follow::FollowState>,
    mut stopped: watch::Receiver<bool>,
) {
    if interval.is_zero() {
        return;
    }
    let dialer = Dialer::new(security).with_connect_timeout(Duration::from_secs(1));
    let mut clients: HashMap<String, SightingsClient<Channel>> = HashMap::new();
    // A fleet started together would report in step, and every node would take all its
    // subscribers' reports at the same instant: each subscriber starts at a point of its own
    // within the first interval.
    let first = tokio::time::Instant::now() + interval.mul_f64(0.5 + rand::random::<f64>());
    let mut tick = tokio::time::interval_at(first, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stopped.wait_for(|s| *s) => true,
        };
        let first = following.borrow().node.clone();
        let send = send_all(
            &sightings,
            &cluster,
            first.as_deref(),
            &dialer,
            &mut clients,
        );
        if last {
            let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
            return;
        }
        send.await;
    }
}

/// Sends everything counted, in reports of at most [`MAX_PER_REPORT`].
async fn send_all(
    sightings: &Sightings,
    cluster: &[String],
    first: Option<&str>,
    dialer: &Dialer,
    clients: &mut HashMap<String, SightingsClient<Channel>>,
) {
    let (mut batch, mut dropped) = sightings.take();
    while !batch.is_empty() || dropped > 0 {
        let rest = batch.split_off(batch.len().min(MAX_PER_REPORT));
        let req = sightings.request(&batch, dropped);
        if send_one(req, cluster, first, dialer, clients).await {
            sightings
                .counts
                .reports_sent
                .fetch_add(1, Ordering::Relaxed);
        } else {
            sightings
                .counts
                .reports_failed
                .fetch_add(1, Ordering::Relaxed);
            batch.extend(rest);
            sightings.put_back(batch, dropped);
            return;
        }
        (batch, dropped) = (rest, 0);
    }
}

/// Sends one report to the first node that takes it.
async fn send_one(
    req: pb::ReportSightingsRequest,
    cluster: &[String],
    first: Option<&str>,
    dialer: &Dialer,
    clients: &mut HashMap<String, SightingsClient<Channel>>,
) -> bool {
    let order = first.into_iter().chain(
        cluster
            .iter()
            .map(String::as_str)
            .filter(|a| Some(*a) != first),
    );
    for addr in order {
        let client = match clients.get(addr) {
            Some(c) => c.clone(),
            None => match dialer.lazy(addr, Expect::AnyNode) {
                Ok(ch) => {
                    let c = SightingsClient::new(ch);
                    clients.insert(addr.to_owned(), c.clone());
                    c
                }
                Err(e) => {
                    tracing::debug!(node = addr, error = %e, "cannot dial for sightings");
                    continue;
                }
            },
        };
        let mut client = client;
        let call = client.report(req.clone());
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(_)) => return true,
            Ok(Err(s)) if s.code() == tonic::Code::InvalidArgument => {
                // A node that refuses the report as such would refuse it everywhere: drop it
                // rather than resend it forever, and say why.
                tracing::warn!(node = addr, error = %s.message(), "a node refused the sightings report; its counts are dropped");
                return true;
            }
            Ok(Err(s)) => {
                tracing::debug!(node = addr, error = %s.message(), "sightings report not taken")
            }
            Err(_) => tracing::debug!(node = addr, "sightings report timed out"),
        }
    }
    false
}
