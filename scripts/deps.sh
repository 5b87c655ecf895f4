#!/usr/bin/env bash
# Installs the system packages recall's tests need: real Redis (the mirror tests write into it,
# the chaos harness compares against it) and etcd servers, nginx (the forward-auth test puts it
# in front of an upstream), wrk (the forward-auth benchmark), Prometheus (the metrics test
# scrapes nodes and a sidecar with it and checks their expositions with its promtool) and
# docker-compose (the compose test validates docker-compose.yml with `docker-compose config`;
# no container engine runs here), Chromium (the live page is tested in it, headless) and faketime
# (libfaketime: the chaos harness's clock-skew scenario runs a node under it).
# Idempotent: does nothing when they are already present.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
echo "installing ${need[*]} (needed by the tests and benchmarks)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start system services; recall's tests start their own servers on loopback.
for svc in redis-server etcd nginx prometheus; do
  $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
done
