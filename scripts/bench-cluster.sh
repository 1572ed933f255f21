#!/usr/bin/env bash
# Cluster benchmark on loopback with real `skein` processes (see tests/examples/cluster_bench.rs):
# origin-failover gap seen by a viewer, leader failover, join to serving, added latency per relay
# hop, and the ring's balance and moved fraction. Prints Markdown tables on stdout; progress on
# stderr.
#
# Usage: scripts/bench-cluster.sh [KILLS] [LEADER_KILLS] [JOINS]      (default: 20 10 5)
#        scripts/bench-cluster.sh mesh [KILLS]   (edge mesh only: origin egress copies with the
#        mesh off and on, relay edge -> edge hop latency, SIGKILL of a relay edge; default 20)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin skein --quiet
cargo build --release -p skein-tests --example cluster_bench --quiet
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')" >&2
exec "${CARGO_TARGET_DIR:-target}/release/examples/cluster_bench" "$@"
