#!/usr/bin/env bash
# The chaos benchmark: builds recall and recall-chaos (release), installs etcd and Redis for the
# baselines (and faketime for clock-skew), then runs every scenario (default: 1M revocations, 16
# sidecars) and writes chaos-results/SEED/: results.md, results.json and per scenario
# convergence-*.svg, held-*.svg and exposure-*.svg.
# Arguments go to recall-chaos (e.g. --revocations 100000 --scenarios no-fault,leader-kill
# --seed 7, or the faults CI leaves out: --revocations 10000 --sidecars 3 --systems recall
# --staleness-bound-ms 3000 --scenarios lagging-follower,clock-skew); --help lists them and
# every scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked --bin recall --bin recall-chaos -p recall -p recall-chaos
exec target/release/recall-chaos "$@"
