//! One-time codes (RFC 6238 TOTP, SHA-1, 6 digits, 30 s steps, one step of skew either way) for
//! operations whose policy says `otp`.
//!
//! An operator enrolls a 160-bit secret generated on their own machine by `recall operator
//! enroll-otp`; it travels once over the operator's mutual-TLS connection and is kept in the
//! replicated state, because whichever node leads must be able to check a code. How it is
//! protected: it is never written to the audit history (the record holds a BLAKE3 commitment),
//! never returned by any call, and redacted from every log line (its `Debug` prints nothing);
//! it is in each node's Raft log and snapshots, inside the data directory, so whoever can read a
//! node's disk can read the secrets: protect node disks as you protect the CA's key.
//!
//! A code is checked when its command is applied, against the time the leader stamped into it,
//! so every replica reaches the same answer; the step it matched is recorded and a code for that
//! step or an earlier one is refused, so each code works once.

use recall_core::{Meta, Timestamp};
use serde::{Deserialize, Serialize};

/// The length of an enrolled secret in bytes (RFC 4226 recommends 160 bits).
pub const SECRET_LEN: usize = 20;

/// An operator's TOTP secret. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OtpSecret(pub [u8; SECRET_LEN]);

impl std::fmt::Debug for OtpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpSecret(<redacted>)")
    }
}

impl OtpSecret {
    /// A fresh secret from the operating system's generator.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// Parses the base32 form authenticators show.
    pub fn from_base32(s: &str) -> Result<Self, String> {
        let secret = totp_rs::Secret::try_from_base32(s.trim())
            .map_err(|e| format!("not a base32 secret: {e:?}"))?;
        let bytes: [u8; SECRET_LEN] = secret
            .as_bytes()
            .try_into()
            .map_err(|_| format!("a secret has {SECRET_LEN} bytes"))?;
        Ok(Self(bytes))
    }

    fn totp(&self, account: &str) -> totp_rs::Totp {
        totp_rs::Builder::new()
            .with_secret(totp_rs::Secret::new_stack(self.0))
            .with_account_name(account.replace(':', "_"))
            .with_issuer(Some("recall"))
            .build()
            .expect("a 160-bit secret with the RFC defaults is always valid")
    }

    /// The code of the 30-second step containing `at` (for tests and scripted operators).
    pub fn code_at(&self, at: Timestamp) -> String {
        self.totp("").generate(secs(at)).to_string()
    }

    /// The step `code` is valid for at `at` (one step of skew either way), if any.
    pub fn check(&self, code: &str, at: Timestamp) -> Option<u64> {
        self.totp("").check(code.trim(), secs(at))
    }

    /// The `otpauth://` URI an authenticator app imports (it contains the secret).
    pub fn uri(&self, account: &str) -> String {
        self.totp(account)
            .to_url()
            .expect("the account name was made valid")
    }

    /// The base32 form of the secret (it is the secret).
    pub fn base32(&self) -> String {
        totp_rs::Secret::new_stack(self.0).to_base32()
    }

    /// The commitment the audit history keeps instead of the secret.
    pub fn commitment(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"recall otp secret v1");
        h.update(&self.0);
        *h.finalize().as_bytes()
    }
}

fn secs(at: Timestamp) -> u64 {
    u64::try_from(at.as_millis() / 1000).unwrap_or(0)
}

/// An operator enrolling (or replacing) their own secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OtpEnrollment {
    /// Who, when, why: the actor is the operator enrolling, and the secret is theirs.
    pub meta: Meta,
    /// The new secret.
    pub secret: OtpSecret,
    /// A current code of the secret being replaced (required when one is enrolled).
    pub current_code: Option<String>,
}

impl OtpEnrollment {
    /// A one-line summary for the audit history.
    pub fn summary(&self) -> String {
        format!("enroll a one-time-code secret for {}", self.meta.actor)
    }

    /// What the audit record hashes: everything but the secret, which only its commitment
    /// stands for.
    pub fn audited(&self) -> (&Meta, [u8; 32]) {
        (&self.meta, self.secret.commitment())
    }
}

/// An enrolled secret and the last step a code was accepted for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpState {
    /// The secret.
    pub secret: OtpSecret,
    /// The step of the last accepted code (0 before any).
    pub last_step: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_valid_for_its_step_and_its_neighbours_only() {
        let s = OtpSecret([7; SECRET_LEN]);
        let t = Timestamp::from_secs(1_800_000_000);
        let code = s.code_at(t);
        assert_eq!(s.check(&code, t), Some(1_800_000_000 / 30));
        assert!(
            s.check(&code, Timestamp::from_secs(1_800_000_030))
                .is_some()
        );
        assert_eq!(s.check(&code, Timestamp::from_secs(1_800_000_120)), None);
        assert_eq!(s.check("12345x", t), None);
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let s = OtpSecret([0xAB; SECRET_LEN]);
        assert_eq!(format!("{s:?}"), "OtpSecret(<redacted>)");
        let round = OtpSecret::from_base32(&s.base32()).unwrap();
        assert_eq!(round, s);
        assert!(
            s.uri("spiffe://recall.local/operator/alice")
                .starts_with("otpauth://totp/")
        );
    }
}
