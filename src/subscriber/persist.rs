//! The subscriber's state on disk: its view (fingerprints, rules, version, digest, seed) in one
//! file, written atomically (temporary file, fsync, rename) and checked on load (a BLAKE3
//! checksum, then the filter's own digest check), so a restart resumes with deltas instead of a
//! full snapshot.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use recall_core::View;

/// The file name inside the data directory.
pub const FILE_NAME: &str = "subscriber-state.bin";

/// The state file of a data directory.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes `view` to `path` atomically.
pub fn save(path: &Path, view: &View) -> anyhow::Result<()> {
    let mut bytes = postcard::to_stdvec(view).context("encoding the subscriber state")?;
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(sum.as_bytes());
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads the state at `path`; `None` if there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<View>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if bytes.len() < 32 {
        bail!("{} is truncated", path.display());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        bail!(
            "{} fails its checksum (corrupt or partly written)",
            path.display()
        );
    }
    let view =
        postcard::from_bytes(body).with_context(|| format!("decoding {}", path.display()))?;
    Ok(Some(view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use recall_core::{Digest, Fingerprint, FingerprintSeed};

    #[test]
    fn saves_loads_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert!(load(&p).unwrap().is_none());
        let view = View {
            seed: FingerprintSeed(3),
            version: 9,
            last_change: 7,
            digest: Digest::of(&[Fingerprint(5)], &[]),
            fingerprints: vec![Fingerprint(5)],
            rules: vec![],
        };
        save(&p, &view).unwrap();
        assert_eq!(load(&p).unwrap(), Some(view));
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("checksum"));
    }
}
