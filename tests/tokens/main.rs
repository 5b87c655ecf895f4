//! Tokens in, verdicts out: bearer tokens verified per issuer and checked for revocation in one
//! verdict, at the faces proxies call (forward-auth behind a real nginx, Envoy's gRPC ext_authz).

mod dev;
mod ext_authz;
#[path = "../propagation/fixture.rs"]
#[allow(dead_code)]
mod fixture;
mod jwks_url;
mod keys;
mod nginx;
mod sidecar;
mod verdicts;
