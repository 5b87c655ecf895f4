//! The deliveries already handled, kept on disk (`ssf-seen.redb` in the data directory) so a
//! SET delivered twice, whether retried by its transmitter, replayed by someone who captured
//! it, or redelivered after our restart, is acted on once. An entry is kept until its SET would
//! be refused as too old anyway (`iat` + `max_age_s` + leeway), so the store holds one window
//! of deliveries and never grows past it.
//!
//! A delivery is recorded only after its write committed: a crash between the two makes the
//! transmitter deliver it again, and the write, being idempotent, only finds it in effect.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// `iss \n jti` → when the entry may be forgotten (unix seconds).
const SEEN: TableDefinition<&str, i64> = TableDefinition::new("seen");
/// (when the entry may be forgotten, `iss \n jti`) → nothing: the prune order.
const BY_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("by_expiry");

/// The store.
#[derive(Clone)]
pub struct Seen {
    db: Arc<Database>,
}

fn key(iss: &str, jti: &str) -> String {
    format!("{iss}\n{jti}")
}

impl Seen {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the SSF data directory {}", dir.display()))?;
        let path = dir.join("ssf-seen.redb");
        let db = Database::create(&path).with_context(|| {
            format!(
                "cannot open {} (is another receiver using it?)",
                path.display()
            )
        })?;
        let txn = db.begin_write()?;
        txn.open_table(SEEN)?;
        txn.open_table(BY_EXPIRY)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Whether the SET `jti` of `iss` was handled.
    pub async fn contains(&self, iss: &str, jti: &str) -> anyhow::Result<bool> {
        let db = self.db.clone();
        let k = key(iss, jti);
        tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let txn = db.begin_read()?;
            Ok(txn.open_table(SEEN)?.get(k.as_str())?.is_some())
        })
        .await?
    }

    /// Records the SET `jti` of `iss` as handled, until `forget_at` (unix seconds); durable
    /// when this returns.
    pub async fn insert(&self, iss: &str, jti: &str, forget_at: i64) -> anyhow::Result<()> {
        let db = self.db.clone();
        let k = key(iss, jti);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let txn = db.begin_write()?;
            {
                let mut seen = txn.open_table(SEEN)?;
                let mut order = txn.open_table(BY_EXPIRY)?;
                if let Some(old) = seen.insert(k.as_str(), forget_at)? {
                    order.remove((old.value(), k.as_str()))?;
                }
                order.insert((forget_at, k.as_str()), ())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await?
    }

    /// Forgets the entries whose time has come by `now` (unix seconds); returns how many.
    pub async fn prune(&self, now: i64) -> anyhow::Result<usize> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let txn = db.begin_write()?;
            let mut n = 0;
            {
                let mut seen = txn.open_table(SEEN)?;
                let mut order = txn.open_table(BY_EXPIRY)?;
                let due: Vec<(i64, String)> = order
                    .range::<(i64, &str)>(..(now, ""))?
                    .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_string())))
                    .collect::<Result<_, _>>()?;
                for (at, k) in due {
                    order.remove((at, k.as_str()))?;
                    seen.remove(k.as_str())?;
                    n += 1;
                }
            }
            txn.commit()?;
            Ok(n)
        })
        .await?
    }

    /// How many deliveries are remembered.
    pub async fn len(&self) -> anyhow::Result<u64> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            Ok(db.begin_read()?.open_table(SEEN)?.len()?)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delivery_is_remembered_across_reopening_until_its_window_ends() {
        let dir = tempfile::tempdir().unwrap();
        {
            let seen = Seen::open(dir.path()).unwrap();
            seen.insert("https://idp.example", "a", 100).await.unwrap();
            seen.insert("https://idp.example", "b", 200).await.unwrap();
        }
        let seen = Seen::open(dir.path()).unwrap();
        assert!(seen.contains("https://idp.example", "a").await.unwrap());
        assert!(!seen.contains("https://other.example", "a").await.unwrap());
        assert_eq!(seen.prune(150).await.unwrap(), 1);
        assert!(!seen.contains("https://idp.example", "a").await.unwrap());
        assert!(seen.contains("https://idp.example", "b").await.unwrap());
        assert_eq!(seen.len().await.unwrap(), 1);
    }
}
