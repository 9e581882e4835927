#!/usr/bin/env bash
# Runs the benchmarks: DNS queries/s of mapmesh vs NSD, then DiscoverInstances requests/s.
# Installs what they need first (nsd, dnsperf, wrk; the venv via scripts/bootstrap.sh).
#
# Usage: scripts/bench.sh [dns|discover|proxy|all] [args for the benchmark...]
#   scripts/bench.sh                       # both, default settings (about 3 minutes)
#   scripts/bench.sh dns --rounds 5        # only DNS, args go to bench/dns_vs_nsd.py
#   scripts/bench.sh discover --duration 5 # only DiscoverInstances
#   scripts/bench.sh proxy --wait-quiet 120  # the sidecar vs HAProxy/nginx (bench/proxy.py,
#                                          # about 25 minutes; installs haproxy, nginx and perf;
#                                          # not part of "all")
# With "all" (the default) the args go to both, so use flags they share (--duration,
# --rounds, --warmup, --server-cpu, --client-cpu, --keep-temp).
# Results: printed, and as JSON in bench/results/ (git-ignored). Needs root for apt-get
# only when a tool is missing, and 2+ cores (server and load generator get one each).
set -euo pipefail
cd "$(dirname "$0")/.."

which=all
case "${1:-}" in
  dns|discover|proxy|all) which=$1; shift ;;
esac

# nsd's Debian package starts a system nsd on port 53; the benchmark runs its own on a
# free port, so a running system nsd is harmless but not needed. Likewise haproxy and
# nginx: bench/proxy.py starts its own instances with generated configs on free ports.
if [ "$which" = proxy ]; then
  bash scripts/bootstrap.sh haproxy nginx wrk linux-perf
else
  bash scripts/bootstrap.sh nsd dnsperf wrk
fi

if [ "$(nproc)" -lt 2 ]; then
  echo "warning: $(nproc) core(s); server and load generator will share a core" >&2
fi

py=.venv/bin/python
if [ "$which" = dns ] || [ "$which" = all ]; then
  echo "== DNS: mapmesh vs NSD (bench/dns_vs_nsd.py)"
  "$py" -m bench.dns_vs_nsd "$@"
fi
if [ "$which" = discover ] || [ "$which" = all ]; then
  [ "$which" = all ] && echo
  echo "== DiscoverInstances (bench/discover.py)"
  "$py" -m bench.discover "$@"
fi
if [ "$which" = proxy ]; then
  echo "== sidecar proxy vs HAProxy and nginx (bench/proxy.py)"
  "$py" -m bench.proxy "$@"
fi
