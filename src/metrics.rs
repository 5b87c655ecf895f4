//! What nodes and sidecars share for `/metrics`: one [`prometheus::Registry`] per running node or
//! sidecar (several run in one test process, so nothing is global), rendered in the Prometheus
//! text format 0.0.4, which every Prometheus and `promtool check metrics` read.
//!
//! Names follow the Prometheus conventions: the `recall_` prefix, `_total` counters, base units
//! (`_seconds`, `_bytes`), and labels only with bounded values (a verdict, a reason from a fixed
//! list, a subscriber of this node).
//!
//! The crate is `prometheus` (per-instance registries, custom collectors read at scrape time, the
//! classic text format). `prometheus-client` writes only OpenMetrics, whose counter families
//! (`# TYPE x counter` over `x_total` samples) the `promtool` shipped with Debian rejects.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry with the process collector (CPU, resident memory, open files) already in it.
pub fn registry() -> Registry {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    register(
        &r,
        prometheus::process_collector::ProcessCollector::for_self(),
    );
    r
}

/// Registers `c` in `r`. Names are fixed in the code, so a clash is a programming error.
pub fn register(r: &Registry, c: impl prometheus::core::Collector + 'static) {
    r.register(Box::new(c))
        .expect("metric names are unique within a registry");
}

/// A histogram with `buckets` (upper bounds, in the metric's unit).
pub fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("a valid histogram definition")
}

/// A counter family with `labels`.
pub fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter definition")
}

/// Latency buckets from half a millisecond to a minute, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// `GET /metrics`: everything in `r`, in the text format.
pub fn render(r: &Registry) -> Response {
    let mut out = Vec::with_capacity(16 << 10);
    match TextEncoder::new().encode(&r.gather(), &mut out) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], out).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
            .into_response(),
    }
}

/// `reason` if it is one of `known`, else "other": a label value from the network never grows
/// a family without bound.
pub fn bounded<'a>(reason: &str, known: &[&'a str]) -> &'a str {
    known
        .iter()
        .find(|k| **k == reason)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_the_text_format_with_total_counters() {
        let r = registry();
        let c = counters("recall_test_events_total", "Events.", &["reason"]);
        register(&r, c.clone());
        c.with_label_values(&["x"]).inc();
        let body = String::from_utf8(
            futures::executor::block_on(axum::body::to_bytes(render(&r).into_body(), usize::MAX))
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert!(
            body.contains("# TYPE recall_test_events_total counter"),
            "{body}"
        );
        assert!(
            body.contains("recall_test_events_total{reason=\"x\"} 1"),
            "{body}"
        );
    }

    #[test]
    fn unknown_label_values_become_other() {
        assert_eq!(bounded("too_slow", &["too_slow"]), "too_slow");
        assert_eq!(bounded("anything\nelse", &["too_slow"]), "other");
    }
}
