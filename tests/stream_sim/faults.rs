//! The faults the scheduler injects: cut streams, stalled subscribers, corrupted states,
//! tampered transports and forged acks.

use rand::Rng;
use recall_core::Fingerprint;
use recall_stream::{Session, Up};

use super::world::{World, encode_up};

impl World {
    pub fn cut(&mut self, l: usize) {
        let s = self.links[l].sub;
        self.disconnect(s, "the link broke");
    }

    pub fn stall(&mut self, s: usize, ticks: u64) {
        self.note(format!("sub {s} stalls for {ticks} ticks"));
        self.subs[s].stalled_until = self.now + ticks;
    }

    /// The subscriber's state is corrupted behind the protocol's back (a bad disk, a bug): one
    /// fingerprint more, with a digest that agrees with itself.
    pub fn flip(&mut self, s: usize) {
        let extra = Fingerprint(self.rng.random());
        let sub = &mut self.subs[s];
        let Some(mut view) = sub.f.replica().view() else {
            return;
        };
        if view.version == 0 || view.fingerprints.contains(&extra) {
            return;
        }
        view.fingerprints.push(extra);
        view.digest.add_entry(extra);
        sub.f
            .replica_mut()
            .load_view(&view)
            .expect("a self-consistent view loads");
        sub.corrupt = true;
        self.note(format!("sub {s}'s state is corrupted at v{}", view.version));
    }

    /// A subscriber (buggy or hostile) acks a version it was sent with a digest the node never
    /// had there: the node must not count it.
    fn forge_ack(&mut self, l: usize) {
        let Some(sent) = self.links[l].session.as_ref().map(Session::sent) else {
            return;
        };
        let digest = recall_core::Digest(self.rng.random());
        let forged = Up::Ack(recall_stream::Ack {
            version: sent,
            digest,
        });
        self.links[l].up.push_back(encode_up(&forged));
        self.note(format!("a forged ack of v{sent} goes up link {l}"));
    }

    /// The transport misbehaves inside one stream (drops, duplicates or swaps a message, in
    /// either direction): each end must notice or be unaffected, never apply a wrong state or
    /// count a wrong ack.
    pub fn tamper(&mut self, l: usize) {
        let down = self.rng.random_bool(0.7);
        let q = if down {
            &self.links[l].down
        } else {
            &self.links[l].up
        };
        if q.len() < 2 {
            return;
        }
        let i = self.rng.random_range(0..q.len() - 1);
        let what = self.rng.random_range(0..if down { 3 } else { 4 });
        if what == 3 {
            return self.forge_ack(l);
        }
        let link = &mut self.links[l];
        let q = if down { &mut link.down } else { &mut link.up };
        let what = match what {
            0 => {
                q.remove(i);
                "drops"
            }
            1 => {
                let m = q[i].clone();
                q.insert(i, m);
                "duplicates"
            }
            _ => {
                q.swap(i, i + 1);
                "swaps"
            }
        };
        let dir = if down { "down" } else { "up" };
        self.note(format!("the transport {what} message {i} {dir} link {l}"));
    }
}
