//! The authority cluster, black-box: real nodes (in this process or as `recall server`
//! processes) talking gRPC over loopback, with real redb files in temporary directories. Each
//! module is one scenario and says what it proves; `fixture` starts, stops, kills and restarts
//! nodes and waits for states under deadlines.

mod bad_input;
mod bounded_appends;
mod check_access;
mod cli;
mod fixture;
mod follower_write;
mod history;
mod import_pipeline;
mod isolated_node;
mod leader_failover_import;
mod lite_mode;
mod metrics;
mod peer_dial;
mod peer_port;
mod procs;
mod prune_grace;
mod refused_links;
mod relay;
mod restart;
mod restart_without_leader;
mod roles;
mod rotation;
mod sidecar_proc;
mod sightings;
mod sigkill_catch_up;
mod silent_node;
mod stepup;
mod ui;
mod witnessed_checkpoints;
