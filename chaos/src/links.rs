//! Faults on the links between nodes, made of the proxies of directed node pairs
//! ([`Authority::link`]): the proxy X→Y carries every connection X opens to Y's peer port, X's
//! requests "up" and Y's answers "down". What X sends Y therefore travels up X→Y and down Y→X,
//! so a fault on what one node says to another always touches both proxies of the pair. The
//! client ports and the sidecars' links are never touched here: an isolated node still serves its
//! own sidecars.
//!
//! A [`LinkFault`] is in place from the moment it is made until [`LinkFault::heal`]; its
//! [`Effect`] (bytes dropped, delivered, delayed since it began) is the proof it did something.

use std::time::Duration;

use crate::authority::Authority;
use crate::proxy::{Blackhole, Counters, Link};

/// What the links of a fault did since it began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Bytes swallowed, both ways.
    pub dropped: u64,
    /// Bytes delivered, both ways.
    pub delivered: u64,
    /// New connections held (never connected upstream).
    pub held: u64,
    /// Chunks delivered late.
    pub delayed: u64,
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped {} B, delivered {} B, held {} new connection(s), delayed {} chunk(s)",
            self.dropped, self.delivered, self.held, self.delayed
        )
    }
}

/// A fault on some peer links, in place until healed.
pub struct LinkFault {
    what: String,
    links: Vec<Link>,
    before: Vec<Counters>,
}

impl LinkFault {
    /// Applies `set` to each of `links`, recording their counters first.
    fn on(what: String, links: Vec<Link>, set: impl Fn(usize, &Link)) -> Self {
        let before = links.iter().map(Link::counters).collect();
        for (i, l) in links.iter().enumerate() {
            set(i, l);
        }
        Self {
            what,
            links,
            before,
        }
    }

    /// Nothing passes between nodes `x` and `y`, either way; each still reaches the third.
    pub fn partition(a: &Authority, x: u64, y: u64) -> Self {
        Self::on(
            format!("partition node {x} from node {y} (both peer links, both ways)"),
            vec![a.link(x, y), a.link(y, x)],
            |_, l| l.blackhole(Blackhole::Both),
        )
    }

    /// Nothing passes between node `x` and any other node, either way; its client port (its
    /// sidecars, the harness) is untouched.
    pub fn isolate(a: &Authority, x: u64) -> Self {
        let links = a
            .others(x)
            .into_iter()
            .flat_map(|y| [a.link(x, y), a.link(y, x)])
            .collect();
        Self::on(
            format!("isolate node {x} from every other node (its peer links, both ways)"),
            links,
            |_, l| l.blackhole(Blackhole::Both),
        )
    }

    /// Every byte node `from` sends node `to` is lost: its requests (up `from`→`to`) and its
    /// answers to `to`'s requests (down `to`→`from`); what `to` sends `from` still arrives.
    pub fn one_way(a: &Authority, from: u64, to: u64) -> Self {
        Self::on(
            format!(
                "lose every byte node {from} sends node {to} (what node {to} sends node {from} still arrives)"
            ),
            vec![a.link(from, to), a.link(to, from)],
            |i, l| {
                l.blackhole(if i == 0 {
                    Blackhole::Up
                } else {
                    Blackhole::Down
                })
            },
        )
    }

    /// Every chunk between nodes `x` and `y` is delivered `latency` late, both ways.
    pub fn slow(a: &Authority, x: u64, y: u64, latency: Duration) -> Self {
        Self::on(
            format!(
                "add {} ms to every chunk between node {x} and node {y}, both ways",
                latency.as_millis()
            ),
            vec![a.link(x, y), a.link(y, x)],
            |_, l| l.set_latency(latency),
        )
    }

    /// What the fault is, in words.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// What its links did since it began.
    pub fn effect(&self) -> Effect {
        let mut e = Effect::default();
        for (l, b) in self.links.iter().zip(&self.before) {
            let c = l.counters();
            e.dropped += (c.dropped_up - b.dropped_up) + (c.dropped_down - b.dropped_down);
            e.delivered += (c.bytes_up - b.bytes_up) + (c.bytes_down - b.bytes_down);
            e.held += c.held - b.held;
            e.delayed += c.delayed_chunks - b.delayed_chunks;
        }
        e
    }

    /// Clears the fault (connections that lost bytes are reset); what it did.
    pub fn heal(self) -> Effect {
        let e = self.effect();
        for l in &self.links {
            l.heal();
        }
        e
    }
}
