#!/usr/bin/env bash
# `wharf serve` under a crowd of bad clients, on loopback: IDLE connections
# that say nothing and SLOW uploads crawling at 16 KiB/s each, while a
# normal client pushes a 4 MiB image and pulls it back. Prints the normal
# client's times and the server's threads, resident memory and open files
# (from /proc/PID/status) under that load, and fails like the test does
# when the client is refused or the server grows past its bounds.
#
#   scripts/bench-slowloris.sh [IDLE] [SLOW]     (defaults 2000, 200)
#   BENCH_RELEASE=1 scripts/bench-slowloris.sh   (optimised build)
#
# It runs the test crates/wharf/tests/serve_load.rs with these numbers, so
# the figures come from the same load generator the test suite uses. The
# test raises its own soft open-file limit to the hard one; IDLE + SLOW must
# stay below that.
set -euo pipefail

IDLE=${1:-2000}
SLOW=${2:-200}
cd "$(dirname "$0")/.."
PROFILE=()
if [ "${BENCH_RELEASE:-0}" = 1 ]; then PROFILE=(--release); fi

echo "hard open-file limit: $(ulimit -Hn); $IDLE idle connections, $SLOW slow uploads" >&2
WHARF_LOAD_IDLE=$IDLE WHARF_LOAD_SLOW=$SLOW \
    nice -n 5 cargo test "${PROFILE[@]}" --locked -p wharf --test serve_load -- --nocapture 2>&1 |
    tee /tmp/wharf-bench-slowloris.log | grep -E '^load:|test result|panicked' || {
        echo "the load test failed; its output is in /tmp/wharf-bench-slowloris.log" >&2
        exit 1
    }
