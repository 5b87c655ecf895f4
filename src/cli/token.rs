//! `recall token init` and `recall token mint`: the development issuer (`recall dev` makes it
//! too) and tokens signed by it, to try the sidecar's bearer-token faces (`/v1/auth`,
//! `POST /v1/token`, ext_authz).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::token::dev_issuer::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer};

/// `recall token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Make the development issuer (an ES256 key, its JWKS and an issuers file for
    /// `recall sidecar --issuers`) in a folder, unless it is already there.
    Init(InitArgs),
    /// Print a token signed by the development issuer (`recall dev` or `recall token init`
    /// makes it).
    Mint(MintArgs),
}

/// Flags of `recall token init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The development issuer's folder.
    #[arg(long, default_value = "recall-data/dev-issuer")]
    dir: PathBuf,
}

/// Flags of `recall token mint`.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    /// The development issuer's folder.
    #[arg(long, default_value = "recall-data/dev-issuer")]
    dir: PathBuf,
    /// The subject (`sub`).
    #[arg(long, default_value = "alice")]
    sub: String,
    /// The token id (`jti`); default: a random one.
    #[arg(long)]
    jti: Option<String>,
    /// The session id (`sid`).
    #[arg(long)]
    sid: Option<String>,
    /// The client (`azp`).
    #[arg(long)]
    client: Option<String>,
    /// The tenant (`tid`).
    #[arg(long)]
    tenant: Option<String>,
    /// How long it is valid, e.g. 10m.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

/// Runs `recall token ...`.
pub fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    let a = match cmd {
        TokenCmd::Init(a) => return init(&a.dir),
        TokenCmd::Mint(a) => a,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut claims = Map::new();
    let jti = a
        .jti
        .unwrap_or_else(|| format!("dev-{:016x}", rand::random::<u64>()));
    claims.insert("sub".into(), a.sub.into());
    claims.insert("jti".into(), jti.into());
    for (name, value) in [("sid", a.sid), ("azp", a.client), ("tid", a.tenant)] {
        if let Some(v) = value {
            claims.insert(name.into(), v.into());
        }
    }
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + a.ttl.as_secs().max(1)));
    println!("{}", DevIssuer::in_dir(&a.dir).mint(claims)?);
    Ok(())
}

/// Makes the development issuer in `dir` unless it is there, and says which.
fn init(dir: &std::path::Path) -> anyhow::Result<()> {
    let issuer = DevIssuer::in_dir(dir);
    let made = issuer.ensure()?;
    let what = if made { "made" } else { "kept" };
    println!(
        "{what} the development issuer {DEV_ISSUER} (audience {DEV_AUDIENCE}) in {}; give a \
         sidecar --issuers {}",
        dir.display(),
        issuer.issuers_file().display()
    );
    Ok(())
}
