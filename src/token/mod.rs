//! Bearer tokens in, verdicts out. A sidecar (or a service embedding the subscriber) hands over
//! the token itself; it is verified per issuer, then checked for revocation on its verified
//! claims, and one verdict says why.
//!
//! - [`policy`]: what each issuer's tokens must satisfy (the issuers file);
//! - [`claims`]: a compact JWS taken apart, once, without trusting it;
//! - [`keys`]: a JWKS into keys that only verify their own algorithm and curve;
//! - [`jwks`]: where keys come from (a file or an HTTPS URL) and how they stay fresh;
//! - [`verify`]: the verification, in order, against an injected clock;
//! - [`cache`]: verifications remembered while they hold (never the revocation check);
//! - [`reason`]: the verdict codes;
//! - [`verdict`]: verification and revocation as one verdict;
//! - [`dev_issuer`]: a development issuer for `recall dev` and `recall token mint`.

pub mod cache;
pub mod claims;
pub mod dev_issuer;
pub mod jwks;
pub mod keys;
pub mod policy;
pub mod reason;
pub mod verdict;
pub mod verify;

pub use policy::{IssuerPolicy, IssuersFile};
pub use reason::{Reason, Rejection};
pub use verdict::TokenVerdict;
pub use verify::{Verified, Verifier};
