//! Times on the command line: `now`, `now-15m`, `now+1h`, RFC 3339 (`2026-11-23T10:00:00Z`) or
//! unix seconds.

use anyhow::{Context, bail};
use recall_core::Timestamp;

/// The current time.
pub fn now() -> Timestamp {
    (crate::node::clock::system())()
}

/// Parses a time given on the command line or in an import file.
pub fn parse(s: &str) -> anyhow::Result<Timestamp> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        let now = now();
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, d) = match rest.split_at(1) {
            ("+", d) => (1, d),
            ("-", d) => (-1, d),
            _ => bail!("{s:?}: expected now, now+DURATION or now-DURATION (e.g. now-15m)"),
        };
        let d = humantime::parse_duration(d).with_context(|| format!("{s:?}: bad duration"))?;
        return Ok(now.plus_millis(sign * i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(Timestamp::from_secs(secs));
    }
    let t = humantime::parse_rfc3339_weak(s)
        .with_context(|| format!("{s:?}: expected now[±DURATION], RFC 3339 or unix seconds"))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .with_context(|| format!("{s:?}: before 1970"))?
        .as_millis();
    Ok(Timestamp::from_millis(
        i64::try_from(ms).unwrap_or(i64::MAX),
    ))
}

/// A time for people (RFC 3339, UTC).
pub fn show(t: Timestamp) -> String {
    let ms = u64::try_from(t.as_millis()).unwrap_or(0);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse("1700000000").unwrap(),
            Timestamp::from_secs(1_700_000_000)
        );
        assert_eq!(
            parse("2023-11-14T22:13:20Z").unwrap(),
            Timestamp::from_secs(1_700_000_000)
        );
        let n = now();
        let t = parse("now-1h").unwrap();
        assert!((n.as_millis() - 3_600_000 - t.as_millis()).abs() < 5_000);
        assert!(parse("yesterday").is_err());
        assert!(parse("now*2").is_err());
    }
}
