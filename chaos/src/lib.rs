//! The chaos harness of recall: it starts a real 3-node authority and M sidecars as separate
//! processes on loopback, every link mutual TLS through a fault-injecting proxy, puts them through a mass
//! recall while it breaks things on purpose, and measures the time until every sidecar holds
//! everything. The same workload goes through etcd watch and Redis pub/sub in the same run.

pub mod authority;
pub mod baseline;
pub mod clocks;
pub mod fleet;
pub mod history;
pub mod links;
pub mod observe;
pub mod pki;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod verify;
pub mod workload;
