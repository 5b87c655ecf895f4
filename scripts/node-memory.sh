#!/usr/bin/env bash
# Resident memory of the authority per revoked entry, measured as an operator would run it: a
# 3-node cluster of release `recall server` processes on 127.0.0.1 (fsync on, certificates from
# `recall pki init`), `recall import` of N token revocations (36-byte ids, one issuer, each
# with an expiry), then each node's VmRSS from /proc, before and after, divided by N.
#
#   bash scripts/node-memory.sh [N]     (default 1000000; results in BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
cargo build --release --locked --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/recall
DIR=$(mktemp -d /tmp/recall-memory.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
"$BIN" pki init "$DIR/pki" >/dev/null
PEERS="1=127.0.0.1:27171,2=127.0.0.1:27271,3=127.0.0.1:27371"
for i in 1 2 3; do
  RECALL_PKI="$DIR/pki" RECALL_STEP_UP=none RUST_LOG=warn "$BIN" server --id "$i" \
    --listen "127.0.0.1:27${i}70" --peer-listen "127.0.0.1:27${i}71" \
    --advertise "127.0.0.1:27${i}71" --peers "$PEERS" --data-dir "$DIR/node-$i" \
    >"$DIR/node-$i.log" 2>&1 &
  PIDS+=($!)
done
CLUSTER=127.0.0.1:27170,127.0.0.1:27270,127.0.0.1:27370
for _ in $(seq 100); do
  "$BIN" status --cluster "$CLUSTER" --pki "$DIR/pki" >/dev/null 2>&1 && break
  sleep 0.2
done
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
before=(); for p in "${PIDS[@]}"; do before+=("$(rss "$p")"); done
awk -v n="$N" 'BEGIN {
  print "kind,namespace,value,expires_at";
  for (i = 0; i < n; i++) printf "token,https://login.example.com,0b6f3c2e-%08d-4d1a-9a7e-5c3b2f1e0d9c,now+2h\n", i
}' >"$DIR/revocations.csv"
start=$(date +%s.%N)
"$BIN" import "$DIR/revocations.csv" --cluster "$CLUSTER" --pki "$DIR/pki" --quiet \
  --wait-converged=120s
end=$(date +%s.%N)
sleep 5
echo "N=$N  import+converge: $(echo "$end - $start" | bc) s  load: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in 0 1 2; do
  after=$(rss "${PIDS[$i]}")
  awk -v id=$((i + 1)) -v b="${before[$i]}" -v a="$after" -v n="$N" \
    'BEGIN { printf "node-%d: RSS %.0f MB -> %.0f MB, %.1f bytes per entry\n", id, b/1024, a/1024, (a-b)*1024/n }'
done
