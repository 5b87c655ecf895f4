//! The invariants that are not checked where their event happens: what a subscriber holds,
//! and what a convergence report may say.

use recall_stream::message::Heartbeat;

use super::world::{Violation, World};

impl World {
    /// A heartbeat that vouches for the node's state is honest: its version is within the lag
    /// bound of everything committed as of the node's last leader contact (the moment the
    /// subscriber counts its staleness from).
    pub(crate) fn honest(&self, s: usize, h: &Heartbeat) -> Result<(), Violation> {
        if !h.stale_reason.is_empty() {
            return Ok(());
        }
        let tick = super::TICK_MS as i64;
        let then = (h.sent_at_ms / tick).saturating_sub(h.contact_age_ms as i64 / tick);
        let committed = self.truth.head_at(then.max(0) as u64);
        if h.applied_version + self.cfg.max_lag < committed {
            return Err(format!(
                "a heartbeat to sub {s} vouches for v{} as current as of tick {then}, when v{committed} \
                 was committed (lag bound {})",
                h.applied_version, self.cfg.max_lag
            ));
        }
        Ok(())
    }

    /// Records what subscriber `s` holds now; its state never goes back and (unless corrupted
    /// behind the protocol's back) is always a committed state.
    pub(crate) fn held(&mut self, s: usize) -> Result<(), Violation> {
        let sub = &mut self.subs[s];
        let (v, d) = (sub.f.replica().version(), sub.f.replica().digest());
        if v < sub.max_version {
            return Err(format!(
                "sub {s} went back from v{} to v{v}: revocations it enforced came undone",
                sub.max_version
            ));
        }
        if !sub.corrupt && self.truth.digest_at(v) != Some(d) {
            return Err(format!(
                "sub {s} holds v{v} with a digest the committed state there does not have"
            ));
        }
        sub.max_version = v;
        if !sub.corrupt {
            sub.held.insert(v, d);
        }
        Ok(())
    }

    /// What a convergence report would say, checked against what the subscribers hold: a
    /// version is reported as landed only when every subscriber holds it.
    pub fn check_convergence(&self) -> Result<(), Violation> {
        let reported = self.counted.iter().copied().min().unwrap_or(0);
        for (s, sub) in self.subs.iter().enumerate() {
            let v = sub.f.replica().version();
            if v < reported {
                return Err(format!(
                    "convergence at v{reported} reported while sub {s} holds v{v}"
                ));
            }
        }
        Ok(())
    }
}
