//! The receiver's configuration file (TOML): where pushed SETs arrive, the audience they must
//! name, where deliveries already handled are remembered, and one `[[transmitter]]` table per
//! identity provider, with its keys, what its events may act on and how it delivers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::token::IssuerPolicy;
use crate::token::policy::{DEFAULT_ALGORITHMS, MAX_LEEWAY_S};

/// The largest SET accepted, in bytes (a SET is a few hundred; this leaves room for keys).
pub const DEFAULT_MAX_SET_BYTES: usize = 16 * 1024;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfConfig {
    /// Where push delivery (RFC 8935) is served: `POST /ssf/events`, with `GET /metrics` and
    /// `/healthz` beside it. Leave it out to only poll.
    pub listen: Option<SocketAddr>,
    /// The certificate chain (PEM) of the push endpoint; with `tls_key`, it is served over
    /// HTTPS. Without them `listen` must be a loopback address (behind your TLS ingress).
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The `aud` every SET must name (the receiver's identifier in the transmitter's stream
    /// configuration), matched byte for byte.
    pub audience: String,
    /// Where the deliveries already handled are remembered (a redb file inside).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The largest SET accepted, in bytes.
    #[serde(default = "default_max_set_bytes")]
    pub max_set_bytes: usize,
    /// How long one delivery may keep trying the cluster's nodes before the transmitter is told
    /// to deliver again later (push: HTTP 503; poll: not acknowledged).
    #[serde(default = "default_write_timeout_s")]
    pub write_timeout_s: u64,
    /// The transmitters.
    #[serde(default, rename = "transmitter")]
    pub transmitters: Vec<TransmitterConfig>,
}

/// One transmitter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmitterConfig {
    /// The SETs' `iss`, matched byte for byte.
    pub issuer: String,
    /// The `alg` values allowed; asymmetric only (a SET must be verifiable without a secret
    /// the receiver could leak). Default: every asymmetric algorithm.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The transmitter's JWKS on disk (re-read when it changes)...
    pub jwks_file: Option<PathBuf>,
    /// ...or over HTTPS (plain `http://` only to loopback), refreshed by its cache headers and
    /// refetched when a SET names an unknown `kid`.
    pub jwks_url: Option<String>,
    /// A CA certificate (PEM) trusted for `jwks_url` and `poll_url` besides the system's.
    pub ca: Option<PathBuf>,
    /// The token issuers (`iss` of the tokens, recall's namespaces) this transmitter's events
    /// may act on; an event about another issuer's subject is refused (`access_denied`).
    /// Default: the transmitter's own `issuer`. The first is used when a subject names none.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The oldest SET accepted, by its `iat`, in seconds: deliveries are remembered this long,
    /// so a replay within it is recognised and one older is refused.
    #[serde(default = "default_max_age_s")]
    pub max_age_s: u64,
    /// Seconds of clock skew allowed on `iat` and `event_timestamp` (at most 300).
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// The longest lifetime of a token this issuer signs: a revoked session and a subject's
    /// not-before rule are kept this long after the event, then pruned.
    #[serde(default = "default_token_lifetime_s")]
    pub token_max_lifetime_s: u64,
    /// A file holding the secret the transmitter sends as `Authorization: Bearer ...` with each
    /// push (its stream configuration's `authorization_header`); pushes without it are refused.
    pub push_token_file: Option<PathBuf>,
    /// Poll delivery (RFC 8936): the transmitter's polling endpoint.
    pub poll_url: Option<String>,
    /// A file holding the bearer token presented to `poll_url`.
    pub poll_token_file: Option<PathBuf>,
    /// Seconds between two polls when the last one returned nothing more.
    #[serde(default = "default_poll_interval_s")]
    pub poll_interval_s: u64,
    /// The most SETs asked for in one poll.
    #[serde(default = "default_poll_max_events")]
    pub poll_max_events: u32,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("recall-ssf")
}
const fn default_max_set_bytes() -> usize {
    DEFAULT_MAX_SET_BYTES
}
const fn default_write_timeout_s() -> u64 {
    10
}
fn default_algorithms() -> Vec<String> {
    DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect()
}
const fn default_max_age_s() -> u64 {
    24 * 3600
}
const fn default_leeway_s() -> u64 {
    30
}
const fn default_token_lifetime_s() -> u64 {
    24 * 3600
}
const fn default_poll_interval_s() -> u64 {
    5
}
const fn default_poll_max_events() -> u32 {
    100
}

impl SsfConfig {
    /// Reads and checks the file; relative paths inside it are taken from its folder.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the SSF config {}: {e}", path.display()))?;
        let mut c: SsfConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("the SSF config {} is not valid: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut c.data_dir);
        c.tls_cert
            .iter_mut()
            .chain(c.tls_key.iter_mut())
            .for_each(rebase);
        for t in &mut c.transmitters {
            [
                &mut t.jwks_file,
                &mut t.ca,
                &mut t.push_token_file,
                &mut t.poll_token_file,
            ]
            .into_iter()
            .flatten()
            .for_each(rebase);
        }
        c.validate()?;
        Ok(c)
    }

    /// Refuses a configuration that cannot be safe or cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.audience.is_empty() {
            anyhow::bail!("`audience` is empty: give the aud your transmitters put in each SET");
        }
        if self.transmitters.is_empty() {
            anyhow::bail!(
                "no [[transmitter]]: add one with issuer and jwks_file or jwks_url (and poll_url \
                 for poll delivery)"
            );
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                anyhow::bail!("give both `tls_cert` and `tls_key`, or neither")
            }
            (None, None) => {
                if let Some(addr) = self.listen
                    && !addr.ip().is_loopback()
                {
                    anyhow::bail!(
                        "`listen` = {addr} is not a loopback address and no `tls_cert` is given: \
                         SETs name your users, so push delivery needs TLS (give tls_cert and \
                         tls_key, or listen on 127.0.0.1 behind a TLS ingress)"
                    );
                }
            }
            _ => {}
        }
        if self.max_set_bytes < 256 {
            anyhow::bail!("`max_set_bytes` under 256 fits no SET");
        }
        if self.write_timeout_s == 0 {
            anyhow::bail!("`write_timeout_s` must be positive");
        }
        if self.listen.is_none() && self.transmitters.iter().all(|t| t.poll_url.is_none()) {
            anyhow::bail!(
                "nothing to receive: give `listen` for push delivery or a transmitter's \
                 `poll_url` for poll delivery"
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.transmitters {
            if !seen.insert(t.issuer.as_str()) {
                anyhow::bail!(
                    "transmitter {:?} is configured twice: merge its tables",
                    t.issuer
                );
            }
            t.validate()?;
        }
        Ok(())
    }

    /// How long one delivery may try the cluster.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_s)
    }
}

impl TransmitterConfig {
    /// A transmitter `issuer` with every default, keys from `jwks_file`.
    pub fn new(issuer: &str, jwks_file: impl Into<PathBuf>) -> Self {
        Self {
            issuer: issuer.into(),
            algorithms: default_algorithms(),
            jwks_file: Some(jwks_file.into()),
            jwks_url: None,
            ca: None,
            namespaces: vec![],
            max_age_s: default_max_age_s(),
            leeway_s: default_leeway_s(),
            token_max_lifetime_s: default_token_lifetime_s(),
            push_token_file: None,
            poll_url: None,
            poll_token_file: None,
            poll_interval_s: default_poll_interval_s(),
            poll_max_events: default_poll_max_events(),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let who = &self.issuer;
        if let Some(a) = self.algorithms.iter().find(|a| a.starts_with("HS")) {
            anyhow::bail!(
                "transmitter {who:?}: {a} is not allowed for SETs: configure the transmitter's \
                 asymmetric key (JWKS) instead"
            );
        }
        self.key_policy("unused").validate()?;
        if self.namespaces.iter().any(String::is_empty) {
            anyhow::bail!("transmitter {who:?}: `namespaces` holds an empty issuer");
        }
        if self.leeway_s > MAX_LEEWAY_S {
            anyhow::bail!(
                "transmitter {who:?}: `leeway_s` = {} is over {MAX_LEEWAY_S}: fix the clocks",
                self.leeway_s
            );
        }
        if self.max_age_s < 60 {
            anyhow::bail!(
                "transmitter {who:?}: `max_age_s` = {} is under 60: a SET retried after a short \
                 outage would be refused",
                self.max_age_s
            );
        }
        if self.token_max_lifetime_s == 0 {
            anyhow::bail!("transmitter {who:?}: `token_max_lifetime_s` must be positive");
        }
        if self.poll_url.is_none() && self.poll_token_file.is_some() {
            anyhow::bail!("transmitter {who:?}: `poll_token_file` is only used with `poll_url`");
        }
        if let Some(url) = &self.poll_url {
            crate::token::policy::check_url(who, url)?;
        }
        if self.poll_interval_s == 0 || !(1..=1000).contains(&self.poll_max_events) {
            anyhow::bail!(
                "transmitter {who:?}: need poll_interval_s > 0 and 1 <= poll_max_events <= 1000"
            );
        }
        Ok(())
    }

    /// The token issuers its events may act on.
    pub fn namespaces(&self) -> Vec<String> {
        if self.namespaces.is_empty() {
            vec![self.issuer.clone()]
        } else {
            self.namespaces.clone()
        }
    }

    /// The key source as the token verifier's policy, for its key store.
    pub fn key_policy(&self, audience: &str) -> IssuerPolicy {
        let mut p = IssuerPolicy::new(&self.issuer, audience, PathBuf::new());
        p.jwks_file = self.jwks_file.clone();
        p.jwks_url = self.jwks_url.clone();
        p.jwks_ca = self.ca.clone().filter(|_| self.jwks_url.is_some());
        p.algorithms = self.algorithms.clone();
        p.leeway_s = self.leeway_s;
        p
    }
}

/// A secret read from a file, without its trailing newline; it must not be empty.
pub fn read_token(what: &str, path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))?;
    let token = text.trim_end_matches(['\n', '\r']).to_string();
    if token.is_empty() || token.contains(['\n', '\r']) {
        anyhow::bail!("{what} {} must hold one line, not empty", path.display());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SsfConfig {
        toml::from_str(
            r#"
            listen = "127.0.0.1:8450"
            audience = "https://recall.example/ssf"
            [[transmitter]]
            issuer = "https://idp.example"
            jwks_file = "jwks.json"
            "#,
        )
        .unwrap()
    }

    fn refused(c: &SsfConfig) -> String {
        format!("{:#}", c.validate().unwrap_err())
    }

    #[test]
    fn a_plain_push_endpoint_off_loopback_is_refused() {
        assert!(config().validate().is_ok());
        let mut c = config();
        c.listen = Some("0.0.0.0:8450".parse().unwrap());
        assert!(refused(&c).contains("needs TLS"), "{}", refused(&c));
        c.tls_cert = Some("cert.pem".into());
        assert!(refused(&c).contains("both"), "{}", refused(&c));
        c.tls_key = Some("key.pem".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn hmac_keys_unknown_fields_and_a_receiver_with_nothing_to_do_are_refused() {
        let mut c = config();
        c.transmitters[0].algorithms = vec!["HS256".into()];
        assert!(refused(&c).contains("asymmetric"), "{}", refused(&c));
        let mut c = config();
        c.listen = None;
        assert!(
            refused(&c).contains("nothing to receive"),
            "{}",
            refused(&c)
        );
        let mut c = config();
        c.transmitters[0].poll_url = Some("http://idp.example/poll".into());
        assert!(refused(&c).contains("loopback"), "{}", refused(&c));
        let e = toml::from_str::<SsfConfig>("audience = \"a\"\nlisten_addr = \"x\"").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
    }
}
