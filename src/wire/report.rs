//! A relay's report of the subscribers behind it (`Downstream`), to and from protobuf, within
//! the limits a node accepts.

use recall_stream::message::{Downstream, Report};

use super::WireError;
use super::stream::{check_id, check_mode};
use crate::proto as pb;

/// The longest relay path of a subscriber behind a relay.
pub const MAX_VIA: usize = 1024;
/// The most subscribers, and the most ids gone, in one relay report.
pub const MAX_REPORT: usize = 1000;

/// A relay's report as protobuf.
pub fn report_to_wire(r: &Report) -> pb::Downstream {
    pb::Downstream {
        subscribers: r
            .subscribers
            .iter()
            .map(|d| pb::DownstreamSubscriber {
                subscriber_id: d.id.clone(),
                mode: d.mode.clone(),
                applied_version: d.applied,
                via: d.via.clone(),
            })
            .collect(),
        gone: r.gone.clone(),
    }
}

/// A relay's report from protobuf; names what breaks the limits.
pub fn report_from_wire(r: pb::Downstream) -> Result<Report, WireError> {
    if r.subscribers.len() > MAX_REPORT || r.gone.len() > MAX_REPORT {
        return Err(WireError::new(
            "downstream",
            format!(
                "at most {MAX_REPORT} subscribers and {MAX_REPORT} ids gone per message: split the report"
            ),
        ));
    }
    let mut subscribers = Vec::with_capacity(r.subscribers.len());
    for d in r.subscribers {
        check_id("downstream.subscribers.subscriber_id", &d.subscriber_id)?;
        check_mode("downstream.subscribers.mode", &d.mode)?;
        if d.via.len() > MAX_VIA {
            return Err(WireError::new(
                "downstream.subscribers.via",
                format!("must be at most {MAX_VIA} bytes"),
            ));
        }
        subscribers.push(Downstream {
            id: d.subscriber_id,
            mode: d.mode,
            applied: d.applied_version,
            via: d.via,
        });
    }
    for id in &r.gone {
        check_id("downstream.gone", id)?;
    }
    Ok(Report {
        subscribers,
        gone: r.gone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_and_one_past_the_limits_is_refused_naming_the_field() {
        let r = Report {
            subscribers: vec![Downstream {
                id: "svc-1".into(),
                mode: "full".into(),
                applied: 7,
                via: "edge-b".into(),
            }],
            gone: vec!["svc-0".into()],
        };
        assert_eq!(report_from_wire(report_to_wire(&r)).unwrap(), r);
        let mut long = report_to_wire(&r);
        long.subscribers[0].via = "x".repeat(MAX_VIA + 1);
        assert_eq!(
            report_from_wire(long).unwrap_err().field,
            "downstream.subscribers.via"
        );
        let mut many = report_to_wire(&r);
        many.gone = vec!["g".into(); MAX_REPORT + 1];
        assert_eq!(report_from_wire(many).unwrap_err().field, "downstream");
        let mut empty = report_to_wire(&r);
        empty.gone = vec![String::new()];
        assert_eq!(
            report_from_wire(empty).unwrap_err().field,
            "downstream.gone"
        );
    }
}
