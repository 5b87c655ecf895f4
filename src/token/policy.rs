//! What a sidecar accepts from each issuer, as written in its issuers file (TOML, one
//! `[[issuer]]` table each), and the checks that refuse a policy that cannot be safe.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// The asymmetric algorithms an issuer allows unless its policy names others.
pub const DEFAULT_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
/// The largest token accepted unless the policy says otherwise.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The largest leeway a policy may give: more hides clock trouble instead of absorbing skew.
pub const MAX_LEEWAY_S: u64 = 300;
/// The shortest HMAC secret: 256 bits.
pub const MIN_HMAC_SECRET: usize = 32;

/// An issuers file: `[[issuer]]` tables.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuersFile {
    /// One policy per issuer.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerPolicy>,
}

impl IssuersFile {
    /// Reads and checks an issuers file; relative paths inside it are taken from its folder.
    pub fn load(path: &Path) -> anyhow::Result<Vec<IssuerPolicy>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the issuers file {}: {e}", path.display()))?;
        let file: IssuersFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("the issuers file {} is not valid: {e}", path.display())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut issuers = file.issuers;
        for p in &mut issuers {
            for f in [&mut p.jwks_file, &mut p.jwks_ca, &mut p.hmac_secret_file]
                .into_iter()
                .flatten()
            {
                if f.is_relative() {
                    *f = base.join(&*f);
                }
            }
        }
        if issuers.is_empty() {
            anyhow::bail!(
                "the issuers file {} names no issuer: add an [[issuer]] table with issuer, \
                 audiences and jwks_file or jwks_url",
                path.display()
            );
        }
        Ok(issuers)
    }
}

/// What is accepted from one issuer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerPolicy {
    /// The `iss` claim, matched byte for byte.
    pub issuer: String,
    /// The token's `aud` must name at least one of these, byte for byte.
    pub audiences: Vec<String>,
    /// The `alg` values allowed. Default: the asymmetric ones. `none` is never allowed; an HMAC
    /// algorithm only with `hmac_secret_file`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// A JWKS document on disk, re-read when it changes.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS document over HTTPS (plain `http://` only to a loopback address), refreshed by its
    /// `Cache-Control: max-age` and refetched when a token names an unknown `kid`.
    pub jwks_url: Option<String>,
    /// A CA certificate (PEM) trusted for `jwks_url` besides the system's roots.
    pub jwks_ca: Option<PathBuf>,
    /// The shared secret of an issuer that signs with HMAC (`HS256`...), at least 32 bytes; a
    /// trailing newline is not part of it.
    pub hmac_secret_file: Option<PathBuf>,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat` (at most 300).
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    /// The longest lifetime (`exp - iat`) accepted, in seconds.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_s: u64,
    /// Whether a token without `iat` is refused (it escapes every not-before rule's proof and
    /// its lifetime cannot be known).
    #[serde(default = "yes")]
    pub require_iat: bool,
    /// Claims that must be present (any JSON value but null).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// The claim that names the token's tenant (for example `tid`), for tenant-wide rules and
    /// entries revoked under the tenant.
    pub tenant_claim: Option<String>,
    /// The largest token accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// The shortest time between two fetches of `jwks_url` (cache headers cannot go below it),
    /// and between two refetches for an unknown `kid`.
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh_s: u64,
    /// The longest time between two fetches of `jwks_url` (and the refresh when the answer
    /// carries no `max-age`).
    #[serde(default = "default_max_refresh")]
    pub jwks_max_refresh_s: u64,
    /// How long keys are kept when `jwks_url` cannot be fetched; past it the issuer's tokens
    /// are refused as `unknown_key`.
    #[serde(default = "default_max_stale")]
    pub jwks_max_stale_s: u64,
}

fn default_algorithms() -> Vec<String> {
    DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect()
}
const fn default_leeway() -> u64 {
    30
}
const fn default_max_lifetime() -> u64 {
    24 * 3600
}
const fn yes() -> bool {
    true
}
const fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}
const fn default_min_refresh() -> u64 {
    30
}
const fn default_max_refresh() -> u64 {
    3600
}
const fn default_max_stale() -> u64 {
    24 * 3600
}

impl IssuerPolicy {
    /// A policy for `issuer` and `audience` with every default, keys from `jwks_file`.
    pub fn new(issuer: &str, audience: &str, jwks_file: impl Into<PathBuf>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            algorithms: default_algorithms(),
            jwks_file: Some(jwks_file.into()),
            jwks_url: None,
            jwks_ca: None,
            hmac_secret_file: None,
            leeway_s: default_leeway(),
            max_lifetime_s: default_max_lifetime(),
            require_iat: true,
            required_claims: vec![],
            tenant_claim: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            jwks_min_refresh_s: default_min_refresh(),
            jwks_max_refresh_s: default_max_refresh(),
            jwks_max_stale_s: default_max_stale(),
        }
    }

    /// The allowed algorithms, or what is wrong with the list (naming the issuer).
    pub fn checked_algorithms(&self) -> anyhow::Result<Vec<Algorithm>> {
        let who = &self.issuer;
        if self.algorithms.is_empty() {
            anyhow::bail!("issuer {who:?}: `algorithms` is empty; leave it out for the default");
        }
        let mut out = Vec::new();
        for name in &self.algorithms {
            if name.eq_ignore_ascii_case("none") {
                anyhow::bail!(
                    "issuer {who:?}: `none` is never allowed (it means an unsigned token)"
                );
            }
            let alg = Algorithm::from_str(name).map_err(|_| {
                anyhow::anyhow!(
                    "issuer {who:?}: unknown algorithm {name:?}; use RS256..RS512, PS256..PS512, \
                     ES256, ES384, EdDSA, or HS256..HS512 with hmac_secret_file"
                )
            })?;
            if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac
                && self.hmac_secret_file.is_none()
            {
                anyhow::bail!(
                    "issuer {who:?}: {name} needs `hmac_secret_file` (the shared secret); a key \
                     from the JWKS is never used as an HMAC secret"
                );
            }
            out.push(alg);
        }
        Ok(out)
    }

    /// Refuses a policy that cannot be safe, naming the issuer and the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let who = &self.issuer;
        if who.is_empty() {
            anyhow::bail!("an [[issuer]] has an empty `issuer`: give its `iss` claim exactly");
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.is_empty()) {
            anyhow::bail!(
                "issuer {who:?}: `audiences` must name at least one non-empty audience (a token \
                 for another service must not pass)"
            );
        }
        let algs = self.checked_algorithms()?;
        let asymmetric = algs
            .iter()
            .any(|a| a.family() != jsonwebtoken::AlgorithmFamily::Hmac);
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), Some(_)) => {
                anyhow::bail!("issuer {who:?}: give `jwks_file` or `jwks_url`, not both")
            }
            (None, None) if asymmetric => anyhow::bail!(
                "issuer {who:?}: no keys: give `jwks_file` or `jwks_url` (or allow only HMAC \
                 algorithms with `hmac_secret_file`)"
            ),
            (_, Some(url)) => check_url(who, url)?,
            _ => {}
        }
        if self.jwks_ca.is_some() && self.jwks_url.is_none() {
            anyhow::bail!("issuer {who:?}: `jwks_ca` is only used with `jwks_url`");
        }
        if self.leeway_s > MAX_LEEWAY_S {
            anyhow::bail!(
                "issuer {who:?}: `leeway_s` = {} is over {MAX_LEEWAY_S}: fix the clocks instead",
                self.leeway_s
            );
        }
        if self.max_lifetime_s == 0 {
            anyhow::bail!("issuer {who:?}: `max_lifetime_s` must be positive");
        }
        if self.max_token_bytes < 64 {
            anyhow::bail!("issuer {who:?}: `max_token_bytes` under 64 fits no JWT");
        }
        if self.tenant_claim.as_deref() == Some("") {
            anyhow::bail!("issuer {who:?}: `tenant_claim` is empty; name a claim or leave it out");
        }
        if self.jwks_min_refresh_s == 0 || self.jwks_min_refresh_s > self.jwks_max_refresh_s {
            anyhow::bail!(
                "issuer {who:?}: need 0 < jwks_min_refresh_s <= jwks_max_refresh_s (got {} and {})",
                self.jwks_min_refresh_s,
                self.jwks_max_refresh_s
            );
        }
        if self.jwks_max_stale_s < self.jwks_max_refresh_s {
            anyhow::bail!(
                "issuer {who:?}: jwks_max_stale_s ({}) must be at least jwks_max_refresh_s ({})",
                self.jwks_max_stale_s,
                self.jwks_max_refresh_s
            );
        }
        Ok(())
    }

    /// The leeway.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_s)
    }
}

/// `https://`, or `http://` to a loopback address only.
pub fn check_url(who: &str, url: &str) -> anyhow::Result<()> {
    let parsed: url::Url = url
        .parse()
        .map_err(|e| anyhow::anyhow!("issuer {who:?}: `jwks_url` {url:?} is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => anyhow::bail!(
            "issuer {who:?}: `jwks_url` must be https:// (keys fetched in plaintext can be \
             swapped on the way); http:// is only for a loopback address"
        ),
        other => anyhow::bail!("issuer {who:?}: `jwks_url` scheme {other:?}: use https://"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IssuerPolicy {
        IssuerPolicy::new("https://idp.example", "api", "/keys.json")
    }

    fn refused(p: IssuerPolicy, needle: &str) {
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }

    #[test]
    fn defaults_are_valid_and_asymmetric() {
        let p = policy();
        p.validate().unwrap();
        let algs = p.checked_algorithms().unwrap();
        assert!(algs.contains(&Algorithm::ES256) && !algs.contains(&Algorithm::HS256));
    }

    #[test]
    fn none_and_hmac_without_secret_are_refused() {
        let mut p = policy();
        p.algorithms = vec!["none".into()];
        refused(p, "never allowed");
        let mut p = policy();
        p.algorithms = vec!["HS256".into()];
        refused(p, "hmac_secret_file");
        let mut p = policy();
        p.algorithms = vec!["XS1".into()];
        refused(p, "unknown algorithm");
    }

    #[test]
    fn audiences_keys_and_urls_are_checked() {
        let mut p = policy();
        p.audiences.clear();
        refused(p, "audiences");
        let mut p = policy();
        p.jwks_file = None;
        refused(p, "no keys");
        let mut p = policy();
        p.jwks_file = None;
        p.jwks_url = Some("http://idp.example/keys".into());
        refused(p, "must be https");
        let mut p = policy();
        p.jwks_file = None;
        p.jwks_url = Some("http://127.0.0.1:9/keys".into());
        p.validate().unwrap();
        let mut p = policy();
        p.leeway_s = 3600;
        refused(p, "leeway_s");
    }

    #[test]
    fn relative_paths_are_taken_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuers.toml");
        std::fs::write(
            &path,
            "[[issuer]]\nissuer = \"https://i\"\naudiences = [\"a\"]\njwks_file = \"k.json\"\n",
        )
        .unwrap();
        let issuers = IssuersFile::load(&path).unwrap();
        assert_eq!(
            issuers[0].jwks_file.as_deref(),
            Some(&*dir.path().join("k.json"))
        );
        std::fs::write(
            &path,
            "[[issuer]]\nissuer = \"https://i\"\naudience = \"a\"\n",
        )
        .unwrap();
        let e = IssuersFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("audience"), "{e}");
    }
}
