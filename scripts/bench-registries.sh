#!/usr/bin/env bash
# scripts/bench-registries.sh OUTDIR
#
# The registry side by side against the strongest peers in one sitting, with
# the shared harness's registry-bench.sh (the same clients and bytes for all):
#   distribution    Debian's docker-registry (CNCF distribution 2.8), run-distribution.sh
#   distribution3   CNCF distribution v3, built from its Go module by scripts/go-tools.sh
#   wharf           target/release/wharf serve (or $WHARF)
# each on a free loopback port with fresh storage, then limits.sh (nginx,
# disk, SHA-256), and writes OUTDIR/{distribution,distribution3,wharf,limits}.json
# and OUTDIR/compare.md: the harness's table plus wharf against the best
# peer of each figure and the pull against nginx. zot is not compared: its Go
# module is not served by the module proxy these machines use.
#
# Environment: WHARF, WHARF_BENCH_TOOLS_BIN (the folder holding `registry`,
# as `export $(scripts/go-tools.sh)` sets it), BENCH_HARNESS (the shared harness
# folder; default `shared/bench` beside the checkout or a parent), BENCH_RUNS
# (3), BENCH_DATA (the harness's inputs; /dev/shm/regbench-data keeps them in
# memory, as BENCHMARKS.md recommends), BENCH_LIMITS (1; 0 skips limits.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fail() {
  printf 'bench-registries: error: %s\n' "$1" >&2
  [[ -z ${2:-} ]] || printf 'hint: %s\n' "$2" >&2
  exit 1
}
[[ $# == 1 ]] || fail "usage: scripts/bench-registries.sh OUTDIR"
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

HARNESS=${BENCH_HARNESS:-}
if [[ -z $HARNESS ]]; then
  dir=$ROOT
  while [[ $dir != / ]]; do
    dir=$(dirname "$dir")
    if [[ -f $dir/shared/bench/registry-bench.sh ]]; then HARNESS=$dir/shared/bench; break; fi
  done
fi
[[ -n $HARNESS && -f $HARNESS/registry-bench.sh ]] ||
  fail "the shared bench harness (shared/bench/registry-bench.sh) was not found beside this checkout" \
    "set BENCH_HARNESS to the folder holding registry-bench.sh"
WHARF=${WHARF:-$ROOT/target/release/wharf}
[[ -x $WHARF ]] || fail "no wharf binary at $WHARF" "cargo build --release -p wharf, or set WHARF"
TOOLS_BIN=${WHARF_BENCH_TOOLS_BIN:-}
V3=$TOOLS_BIN/registry
[[ -n $TOOLS_BIN && -x $V3 ]] || fail "distribution v3 was not found (WHARF_BENCH_TOOLS_BIN is '$TOOLS_BIN')" \
  'export $(scripts/go-tools.sh) builds it and sets WHARF_BENCH_TOOLS_BIN'


free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/wharf-bench-registries.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
load() { awk '{ print $1 }' /proc/loadavg; }

rc=0
echo "load average before: $(load)" | tee "$OUT/load.txt" >&2

port=$(free_port)
BENCH_REG_ROOT=$WORK/distribution "$HARNESS/run-distribution.sh" "$port" "$OUT/distribution.json" >/dev/null || rc=$?
echo "load average after distribution: $(load)" | tee -a "$OUT/load.txt" >&2

# distribution v3 with the configuration run-distribution.sh gives 2.8
port=$(free_port)
mkdir -p "$WORK/distribution3"
cat >"$WORK/distribution3.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/distribution3
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
OTEL_TRACES_EXPORTER=none "$HARNESS/with-server.sh" "http://127.0.0.1:$port" "$OUT/distribution3.json" -- \
  "$V3" serve "$WORK/distribution3.yml" >/dev/null || rc=$?
rm -rf "$WORK/distribution3"
echo "load average after distribution3: $(load)" | tee -a "$OUT/load.txt" >&2

port=$(free_port)
"$HARNESS/with-server.sh" "http://127.0.0.1:$port" "$OUT/wharf.json" -- \
  "$WHARF" serve --listen "127.0.0.1:$port" --root "$WORK/wharf" >/dev/null || rc=$?
rm -rf "$WORK/wharf"
echo "load average after wharf: $(load)" | tee -a "$OUT/load.txt" >&2

if [[ ${BENCH_LIMITS:-1} == 1 ]]; then
  LIMITS_PORT=$(free_port) "$HARNESS/limits.sh" "$OUT/limits.json" >/dev/null || rc=$?
fi

{
  "$HARNESS/compare.py" "$OUT/distribution.json" "$OUT/distribution3.json" "$OUT/wharf.json"
  echo
  python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    path = os.path.join(out, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else {}
d2, d3, w, lim = load("distribution"), load("distribution3"), load("wharf"), load("limits")
rows = [
    ("blob push 1 GiB, monolithic (MB/s)", "blob_push_1g_MBps", True, "≥ 2.5×"),
    ("blob push 1 GiB, 16 MiB chunks (MB/s)", "blob_push_chunked_1g_MBps", True, "≥ 2.5×"),
    ("500 × 4 KiB pushes (uploads/s)", "small_push_rate", True, "≥ 3×"),
    ("manifest GET (req/s)", "manifest_get_rps", True, "≥ 10×"),
    ("blob HEAD (req/s)", "head_rps", True, "≥ 10×"),
    ("blob pull 1 GiB (MB/s)", "blob_pull_1g_MBps", True, ""),
    ("server RSS peak (MiB)", "server_rss_peak_mib", False, "≤ ¼"),
]
print("| figure | best peer | its figure | wharf | wharf vs best peer | target |")
print("|---|---|---:|---:|---:|---|")
for label, key, higher, target in rows:
    peers = [(n, r.get(key)) for n, r in (("distribution 2.8", d2), ("distribution v3", d3)) if r.get(key)]
    if not peers or not w.get(key):
        continue
    name, best = (max if higher else min)(peers, key=lambda p: p[1])
    ratio = w[key] / best if higher else best / w[key]
    print(f"| {label} | {name} | {best:,.1f} | {w[key]:,.1f} | {ratio:.2f}× | {target} |")
for key, label in (("loopback_get_sendfile_1g_MBps", "nginx, sendfile"), ("loopback_get_copy_1g_MBps", "nginx, copy")):
    if lim.get(key) and w.get("blob_pull_1g_MBps"):
        print(f"\nwharf's 1 GiB pull is {100 * w['blob_pull_1g_MBps'] / lim[key]:.0f} % of {label} ({lim[key]:,.0f} MB/s; target ≥ 90 %).")
PY
  echo
  sed 's/^/    /' "$OUT/load.txt"
} | tee "$OUT/compare.md"
exit "$rc"
