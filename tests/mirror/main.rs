//! The Redis mirror against a real `redis-server` and a real `recall mirror` process: Redis ends
//! with exactly the authoritative set through revokes, rules and lifts, after the mirror is
//! SIGKILLed mid-import (resuming from the version Redis holds), and after Redis restarts empty
//! (refilled from a snapshot).

mod bad_input;
#[path = "../propagation/fixture.rs"]
#[allow(dead_code)]
mod fixture;
mod follows;
mod redis_restart;
mod sigkill_import;
mod support;
