//! The authoritative revocation set: every entry with its metadata, every rule, the version and
//! the digest. `apply` is deterministic (the same commands at the same versions give the same set
//! on every replica) and returns the delta subscribers need.
//!
//! A prune finds what expired through an [`expiry`] index kept in step with every revoke, lift
//! and prune, so neither `prune` nor `has_expired` scans the set. Entries live in [`layers`]:
//! a mutable head over frozen, shared layers, so [`RevocationSet::freeze`] takes an immutable
//! view of the whole set without copying an entry, and a snapshot is built from that view
//! ([`frozen`]) off every lock.
//!
//! The set keeps no revoked key in memory: an entry is the key's fingerprint and a second,
//! independent keyed hash of it (its [`KeyCheck`]), 128 bits that name the key; with its expiry
//! and the version that revoked it, 40 bytes in a merged layer (see [`layers`]). The keys
//! themselves stay in the Raft log and the audit history, where commands are kept.

mod expiry;
pub mod frozen;
mod layers;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use self::expiry::ExpiryIndex;
use self::frozen::{Flat, Frozen};
use self::layers::{Bucket, Layers, Slot};
use crate::verdict::{Lookup, Presence};
use crate::{
    Command, Delta, Digest, Expiry, Fingerprint, FingerprintSeed, Fingerprinter, KeyCheck, Meta,
    Revocation, RevocationKey, Rule, RuleFingerprint, RuleScope, Timestamp, View,
};

/// One revoked key as the authority holds it: not the key, but its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The key's fingerprint.
    pub fingerprint: Fingerprint,
    /// The key's check hash: with the fingerprint, which key it is.
    pub check: KeyCheck,
    /// When it stops mattering; `None` until lifted.
    pub expires_at: Option<Timestamp>,
    /// The version of the command that revoked it; its [`Meta`] says who, when and why.
    pub revoked_in: u64,
}

impl Entry {
    fn of(fingerprint: Fingerprint, slot: &Slot) -> Self {
        Self {
            fingerprint,
            check: slot.check,
            expires_at: slot.expires_at(),
            revoked_in: slot.revoked_in,
        }
    }
}

/// One rule as the authority holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRule {
    /// The rule.
    pub rule: Rule,
    /// Who set it, when and why.
    pub meta: Meta,
}

/// The metadata of a revoke command, kept while any entry it revoked remains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Event {
    meta: Meta,
    live_entries: u64,
}

/// What applying one command did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The subscriber-visible change, if there was one.
    pub delta: Option<Delta>,
    /// Keys or rules newly revoked.
    pub added: u64,
    /// Keys or rules that were already revoked (a no-op for them).
    pub already_present: u64,
    /// Keys or rules lifted or pruned.
    pub removed: u64,
    /// Keys or rules a lift named that were not revoked.
    pub not_found: u64,
}

/// A command arrived at a version not after the set's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("version {given} is not after the set's version {current}: commands apply in log order")]
pub struct OutOfOrder {
    /// The version given.
    pub given: u64,
    /// The set's version.
    pub current: u64,
}

/// The authoritative set.
#[derive(Clone, Debug)]
pub struct RevocationSet {
    fp: Fingerprinter,
    version: u64,
    last_change: u64,
    digest: Digest,
    /// Keyed by fingerprint; more than one entry only on a fingerprint collision. A fingerprint
    /// leaves the subscriber view only when its last entry goes.
    entries: Layers,
    len: usize,
    rules: HashMap<Fingerprint, StoredRule>,
    events: BTreeMap<u64, Event>,
    /// Each fingerprint by the earliest expiry of its entries (those revoked until lifted are
    /// not in it).
    entry_expiries: ExpiryIndex,
    /// Each rule scope by its rule's expiry.
    rule_expiries: ExpiryIndex,
}

/// A serialisable copy of the whole authoritative set (for Raft snapshots).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSnapshot {
    /// The fingerprint seed.
    pub seed: FingerprintSeed,
    /// The version the snapshot is at.
    pub version: u64,
    /// The version of the last change.
    pub last_change: u64,
    /// The digest, checked again on restore.
    pub digest: Digest,
    /// Every entry, sorted by fingerprint and check.
    pub entries: Vec<Entry>,
    /// Every rule.
    pub rules: Vec<StoredRule>,
    /// Who revoked, when and why, by version.
    pub events: Vec<(u64, Meta)>,
}

/// A snapshot whose digest does not match its contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("snapshot digest {claimed} does not match its contents ({actual}): it is corrupt")]
pub struct CorruptSnapshot {
    /// The digest the snapshot claimed.
    pub claimed: Digest,
    /// The digest of its contents.
    pub actual: Digest,
}

/// `None` is "never expires", which is later than any time.
fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    a.zip(b).map(|(a, b)| a.max(b))
}

/// The latest expiry of the entries of one fingerprint.
fn latest(bucket: &[Slot]) -> Option<Timestamp> {
    bucket
        .iter()
        .map(|e| e.expires_at())
        .reduce(later)
        .unwrap_or(None)
}

/// The earliest expiry of the entries of one fingerprint, `None` if none of them expires: where
/// the expiry index files the fingerprint.
fn earliest(bucket: &[Slot]) -> Option<Timestamp> {
    bucket.iter().filter_map(|e| e.expires_at()).min()
}

fn expired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_some_and(|e| e <= now)
}

impl RevocationSet {
    /// An empty set at version 0.
    pub fn new(seed: FingerprintSeed) -> Self {
        Self {
            fp: Fingerprinter::new(seed),
            version: 0,
            last_change: 0,
            digest: Digest::default(),
            entries: Layers::default(),
            len: 0,
            rules: HashMap::new(),
            events: BTreeMap::new(),
            entry_expiries: ExpiryIndex::default(),
            rule_expiries: ExpiryIndex::default(),
        }
    }

    /// The fingerprinter of this set's cluster.
    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fp
    }

    /// The version of the last applied command.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The version of the last command that changed the subscriber view.
    pub fn last_change(&self) -> u64 {
        self.last_change
    }

    /// The digest of the subscriber view.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// How many keys are revoked.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is revoked and no rule holds.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.rules.is_empty()
    }

    /// How many rules hold.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The entry for `key` and who revoked it, if it is revoked.
    pub fn get(&self, key: &RevocationKey) -> Option<(Entry, &Meta)> {
        let fp = self.fp.key(key);
        let check = self.fp.check(key);
        let slot = self.entries.get(&fp)?.iter().find(|e| e.check == check)?;
        Some((
            Entry::of(fp, slot),
            &self.events.get(&slot.revoked_in)?.meta,
        ))
    }

    /// The rule with this scope, if one holds.
    pub fn rule(&self, scope: &RuleScope) -> Option<&StoredRule> {
        self.rules.get(&self.fp.scope(scope))
    }

    /// Moves to `version` without a change (a Raft entry that carries no command).
    pub fn advance(&mut self, version: u64) -> Result<(), OutOfOrder> {
        if version <= self.version {
            return Err(OutOfOrder {
                given: version,
                current: self.version,
            });
        }
        self.version = version;
        Ok(())
    }

    /// Applies `cmd` as the command at `version`.
    pub fn apply(&mut self, version: u64, cmd: &Command) -> Result<Applied, OutOfOrder> {
        self.advance(version)?;
        let mut out = Applied::default();
        let mut delta = Delta {
            version,
            prev_version: self.last_change,
            ..Delta::default()
        };
        match cmd {
            Command::Revoke { meta, items } => {
                self.revoke(version, meta, items, &mut out, &mut delta)
            }
            Command::AddRule { meta, rule } => self.add_rule(meta, rule, &mut out, &mut delta),
            Command::Lift { keys, rules, .. } => {
                for key in keys {
                    let (fp, check) = (self.fp.key(key), self.fp.check(key));
                    match self.remove_entry(fp, check, &mut delta) {
                        true => out.removed += 1,
                        false => out.not_found += 1,
                    }
                }
                for scope in rules {
                    match self.remove_rule(self.fp.scope(scope), &mut delta) {
                        true => out.removed += 1,
                        false => out.not_found += 1,
                    }
                }
            }
            Command::Prune { now } => self.prune(*now, &mut out, &mut delta),
        }
        if !delta.is_empty() {
            delta.digest = self.digest;
            delta.at = match cmd {
                Command::Prune { now } => *now,
                _ => cmd.meta().map_or(Timestamp(0), |m| m.at),
            };
            self.last_change = version;
            out.delta = Some(delta);
        }
        Ok(out)
    }

    fn revoke(
        &mut self,
        version: u64,
        meta: &Meta,
        items: &[Revocation],
        out: &mut Applied,
        delta: &mut Delta,
    ) {
        for item in items {
            let fp = self.fp.key(&item.key);
            let check = self.fp.check(&item.key);
            let bucket = self.entries.entry(fp);
            // What the fingerprint's expiry was, when it was already revoked.
            let held = (!bucket.is_empty()).then(|| latest(bucket));
            let indexed = earliest(bucket);
            if let Some(e) = bucket.iter_mut().find(|e| e.check == check) {
                e.set_expires_at(later(e.expires_at(), item.expires_at));
                out.already_present += 1;
            } else {
                if held.is_none() {
                    delta.added.push(fp);
                    self.digest.add_entry(fp);
                }
                let at = bucket.partition_point(|e| e.check < check);
                bucket.insert(at, Slot::new(check, item.expires_at, version));
                self.len += 1;
                out.added += 1;
            }
            self.entry_expiries.update(fp, indexed, earliest(bucket));
            let at = latest(bucket);
            if held != Some(at) {
                delta.expiries.push(Expiry {
                    fingerprint: fp,
                    at,
                });
            }
        }
        if out.added > 0 {
            self.events.insert(
                version,
                Event {
                    meta: meta.clone(),
                    live_entries: out.added,
                },
            );
        }
    }

    fn add_rule(&mut self, meta: &Meta, rule: &Rule, out: &mut Applied, delta: &mut Delta) {
        let scope = self.fp.scope(&rule.scope);
        if let Some(old) = self.rules.get_mut(&scope)
            && old.rule.not_before >= rule.not_before
        {
            let was = old.rule.expires_at;
            old.rule.expires_at = later(was, rule.expires_at);
            self.rule_expiries.update(scope, was, old.rule.expires_at);
            out.already_present += 1;
            return;
        }
        let replaced = self.rules.insert(
            scope,
            StoredRule {
                rule: rule.clone(),
                meta: meta.clone(),
            },
        );
        let was = replaced.as_ref().and_then(|old| old.rule.expires_at);
        self.rule_expiries.update(scope, was, rule.expires_at);
        if let Some(old) = replaced {
            self.digest.remove_rule(scope, old.rule.not_before);
        }
        self.digest.add_rule(scope, rule.not_before);
        delta.rules_set.push(RuleFingerprint {
            scope,
            not_before: rule.not_before,
        });
        out.added += 1;
    }

    /// Removes the entry of the key `(fp, check)`; reports whether there was one.
    fn remove_entry(&mut self, fp: Fingerprint, check: KeyCheck, delta: &mut Delta) -> bool {
        let Some(pos) = self
            .entries
            .get(&fp)
            .and_then(|b| b.iter().position(|e| e.check == check))
        else {
            return false;
        };
        let bucket = self.entries.entry(fp);
        let indexed = earliest(bucket);
        let entry = bucket.remove(pos);
        self.entry_expiries.update(fp, indexed, earliest(bucket));
        if bucket.is_empty() {
            self.entries.remove(fp);
            delta.removed.push(fp);
            self.digest.remove_entry(fp);
        }
        self.len -= 1;
        self.release_event(entry.revoked_in);
        true
    }

    fn release_event(&mut self, version: u64) {
        if let Some(ev) = self.events.get_mut(&version) {
            ev.live_entries -= 1;
            if ev.live_entries == 0 {
                self.events.remove(&version);
            }
        }
    }

    fn remove_rule(&mut self, scope: Fingerprint, delta: &mut Delta) -> bool {
        let Some(old) = self.rules.remove(&scope) else {
            return false;
        };
        self.rule_expiries.update(scope, old.rule.expires_at, None);
        self.digest.remove_rule(scope, old.rule.not_before);
        delta.rules_removed.push(scope);
        true
    }

    /// Removes every entry and rule expired at `now`: O(log n + what expired), through the
    /// expiry indexes. The removal order is sorted, as the scan this replaced was.
    fn prune(&mut self, now: Timestamp, out: &mut Applied, delta: &mut Delta) {
        let mut gone: Vec<(Fingerprint, KeyCheck)> = Vec::new();
        for fp in self.entry_expiries.due(now) {
            let bucket = self.entries.get(&fp).map_or(&[][..], Bucket::as_slice);
            debug_assert!(
                !bucket.is_empty(),
                "the expiry index holds only revoked fingerprints"
            );
            gone.extend(
                bucket
                    .iter()
                    .filter(|e| expired(e.expires_at(), now))
                    .map(|e| (fp, e.check)),
            );
        }
        gone.sort();
        for (fp, check) in &gone {
            self.remove_entry(*fp, *check, delta);
        }
        let mut rules = self.rule_expiries.due(now);
        rules.sort();
        for scope in &rules {
            self.remove_rule(*scope, delta);
        }
        out.removed = (gone.len() + rules.len()) as u64;
        delta.removed.sort();
    }

    /// Whether a prune at `now` would remove anything (the leader asks before proposing one, so
    /// idle clusters do not fill their log and audit history with empty prunes).
    /// O(1): the first item of each expiry index.
    pub fn has_expired(&self, now: Timestamp) -> bool {
        self.entry_expiries.any_due(now) || self.rule_expiries.any_due(now)
    }

    /// How many fingerprints and rule scopes wait in the expiry indexes: one for each revoked
    /// fingerprint or rule that can expire.
    pub fn indexed_expiries(&self) -> usize {
        self.entry_expiries.len() + self.rule_expiries.len()
    }

    /// The latest expiry of each of `fingerprints` (`None`: until lifted, or not revoked), in
    /// the same order: what a snapshot carries for subscribers that keep expiries.
    pub fn expiries(&self, fingerprints: &[Fingerprint]) -> Vec<Option<Timestamp>> {
        fingerprints
            .iter()
            .map(|fp| self.entries.get(fp).and_then(|b| latest(b)))
            .collect()
    }

    /// The subscriber view: sorted fingerprints and rules at the current version.
    pub fn view(&self) -> View {
        let fingerprints: Vec<Fingerprint> = self.entries.iter().map(|(fp, _)| *fp).collect();
        View {
            seed: self.fp.seed(),
            version: self.version,
            last_change: self.last_change,
            digest: self.digest,
            fingerprints,
            rules: self.rule_fingerprints(),
        }
    }

    fn rule_fingerprints(&self) -> Vec<RuleFingerprint> {
        let mut rules: Vec<RuleFingerprint> = self
            .rules
            .iter()
            .map(|(scope, r)| RuleFingerprint {
                scope: *scope,
                not_before: r.rule.not_before,
            })
            .collect();
        rules.sort_unstable();
        rules
    }

    /// An immutable view of the whole set at this version: O(frozen layers + rules + revoke
    /// commands with live entries), no entry copied. The head of the entries is frozen, so the
    /// next changes go to a fresh one; [`Frozen::flatten`] it off the lock, then hand it back to
    /// [`RevocationSet::settle`].
    pub fn freeze(&mut self) -> Frozen {
        Frozen {
            seed: self.fp.seed(),
            version: self.version,
            last_change: self.last_change,
            digest: self.digest,
            layers: self.entries.freeze(),
            rules: self.rules.values().cloned().collect(),
            events: self
                .events
                .iter()
                .map(|(v, e)| (*v, e.meta.clone()))
                .collect(),
        }
    }

    /// Puts the merged layer of `flat` in place of the frozen layers it was merged from, so
    /// lookups probe fewer layers: O(layers). False (nothing changed) if the set no longer holds
    /// those layers (a snapshot was installed meanwhile).
    pub fn settle(&mut self, flat: &Flat) -> bool {
        match flat.merged() {
            Some((start, from, merged)) => self.entries.settle(start, from, merged),
            None => true,
        }
    }

    /// How many fingerprints are not yet in a merged (sorted) layer: changes since the last
    /// merge. They cost about twice what merged ones do; past a bound, freeze, flatten and
    /// settle (as a snapshot does) to merge them.
    pub fn unmerged(&self) -> usize {
        self.entries.unmerged()
    }

    /// How many frozen layers sit under the head (each lookup of a fingerprint the head lacks
    /// probes them).
    pub fn frozen_layers(&self) -> usize {
        self.entries.frozen_layers()
    }

    /// A full, deterministic copy of the set.
    pub fn snapshot(&self) -> SetSnapshot {
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .flat_map(|(fp, b)| b.iter().map(|s| Entry::of(*fp, s)))
            .collect();
        let mut rules: Vec<StoredRule> = self.rules.values().cloned().collect();
        rules.sort_by(|a, b| a.rule.scope.cmp(&b.rule.scope));
        SetSnapshot {
            seed: self.fp.seed(),
            version: self.version,
            last_change: self.last_change,
            digest: self.digest,
            entries,
            rules,
            events: self
                .events
                .iter()
                .map(|(v, e)| (*v, e.meta.clone()))
                .collect(),
        }
    }

    /// Rebuilds a set from a snapshot, checking its digest. The entries become one sorted
    /// layer, built in place (a snapshot lists them sorted; one that does not is sorted first).
    /// The same key twice is kept once.
    pub fn restore(mut snap: SetSnapshot) -> Result<Self, CorruptSnapshot> {
        let mut set = Self::new(snap.seed);
        set.version = snap.version;
        set.last_change = snap.last_change;
        let metas: BTreeMap<u64, Meta> = snap.events.into_iter().collect();
        if !snap.entries.is_sorted() {
            snap.entries.sort_unstable();
        }
        snap.entries
            .dedup_by(|b, a| (a.fingerprint, a.check) == (b.fingerprint, b.check));
        let mut bottom: Vec<(Fingerprint, Bucket)> = Vec::with_capacity(snap.entries.len());
        for entry in snap.entries {
            let slot = Slot::new(entry.check, entry.expires_at, entry.revoked_in);
            match bottom.last_mut() {
                Some((fp, bucket)) if *fp == entry.fingerprint => bucket.push(slot),
                _ => {
                    set.digest.add_entry(entry.fingerprint);
                    bottom.push((entry.fingerprint, Bucket::from_slice(&[slot])));
                }
            }
            if let Some(meta) = metas.get(&entry.revoked_in) {
                set.events
                    .entry(entry.revoked_in)
                    .or_insert_with(|| Event {
                        meta: meta.clone(),
                        live_entries: 0,
                    })
                    .live_entries += 1;
            }
            set.len += 1;
        }
        for (fp, bucket) in &bottom {
            set.entry_expiries.update(*fp, None, earliest(bucket));
        }
        set.entries = Layers::from_sorted(bottom);
        for stored in snap.rules {
            let scope = set.fp.scope(&stored.rule.scope);
            set.digest.add_rule(scope, stored.rule.not_before);
            let expires_at = stored.rule.expires_at;
            // A scope twice is a corrupt snapshot (its digest then disagrees); keep the index
            // in step until that is found.
            let was = set
                .rules
                .insert(scope, stored)
                .and_then(|r| r.rule.expires_at);
            set.rule_expiries.update(scope, was, expires_at);
        }
        if set.digest != snap.digest {
            return Err(CorruptSnapshot {
                claimed: snap.digest,
                actual: set.digest,
            });
        }
        Ok(set)
    }
}

/// Two sets are equal when they hold the same: how their entries sit in layers does not count.
impl PartialEq for RevocationSet {
    fn eq(&self, other: &Self) -> bool {
        self.fp == other.fp
            && self.version == other.version
            && self.last_change == other.last_change
            && self.digest == other.digest
            && self.len == other.len
            && self.rules == other.rules
            && self.events == other.events
            && self.entry_expiries == other.entry_expiries
            && self.rule_expiries == other.rule_expiries
            && self.entries.iter().eq(other.entries.iter())
    }
}

impl Eq for RevocationSet {}

impl Lookup for RevocationSet {
    fn entry(&self, fp: Fingerprint) -> Presence {
        if self.entries.contains_key(&fp) {
            Presence::Present
        } else {
            Presence::Absent
        }
    }

    fn rule(&self, scope: Fingerprint) -> Option<Timestamp> {
        self.rules.get(&scope).map(|r| r.rule.not_before)
    }

    fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }
}
