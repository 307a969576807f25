#!/usr/bin/env bash
# scripts/bench-wan.sh PROFILE [OUTJSON]
#
# Sync and pull-through over a WAN-shaped upstream, every tool in the same
# run. PROFILE is one of
#   datacenter    1000 Mbit/s, 10 ms RTT, the 20-image / 2 GiB set, 1 GiB cache blob
#   site-uplink    100 Mbit/s, 60 ms RTT, 20 images / 512 MiB (a cold sync at
#                  full link speed takes ~45 s), 128 MiB cache blob
#   smoke          200 Mbit/s, 20 ms RTT, 4 images / 8 MiB, 4 pullers: seconds; the test
#                  suite runs it so this script cannot rot (its figures mean nothing)
#
# The link. Two network namespaces this script creates (and deletes on exit):
# "site" (the tools, the destination registry, the caches; only its own
# loopback and the link) and "up" (the upstream registry), joined by a veth
# pair whose two ends are rate-limited by `tc tbf` (netem is not available on
# these kernels). The round trip comes from scripts/delayline.py at the
# upstream's end of the link: every byte is released RTT/2 after it arrived,
# each way, and a new connection pays one more RTT (its handshake). Nothing
# outside these namespaces is a traffic target.
#
#   site ns                                   up ns
#   tools, caches ── veth (tbf) ── 10.77.0.2:5000 delayline ─ countproxy ─ docker-registry
#   destination registry ─ countproxy         (counts every request over the link)
#
# First the link is measured (capacity: curl GETs of a blob sized to ~1 s;
# RTT: /v2/ GETs on one connection, and on new connections) and printed, so
# each figure has its limit beside it. Then:
#   sync   per tool (skopeo sync, wharf sync, and regsync and crane when built
#          by scripts/go-tools.sh): a fresh destination registry, the cold
#          sync of the whole set, a digest check, the warm re-run, the check
#          again. Seconds, MiB/s, link utilisation (bytes the upstream sent ÷
#          (measured capacity × seconds)), requests per image on each side.
#   cache  per pull-through cache (wharf serve with [[upstream]], Debian's
#          docker-registry 2.8 and distribution v3 in proxy mode), each started
#          empty: a direct curl GET of a blob from the upstream, then the cold
#          and the warm GET through the cache (TTFB, seconds, % of the link);
#          then PULLERS concurrent cold pulls of one image (manifest, config,
#          layers) through it, and how many times the upstream sent each blob.
#
# The figures go to stdout as Markdown tables; the JSON (for scripts) goes to
# OUTJSON (default $BENCH_LOGDIR/result.json). Progress on stderr.
#
# Needs root (namespaces, tc), iproute2, python3, curl, jq, skopeo,
# docker-registry, /usr/bin/time, util-linux (unshare), the release build
# (cargo build --release -p wharf), and the shared bench harness (syncset.py,
# countproxy.py, benchlib.sh, results2json.py) in a folder `shared/bench`
# beside the checkout or one of its parents, or in $BENCH_HARNESS.
#
# Environment:
#   WHARF               the wharf binary (default target/release/wharf)
#   WHARF_BENCH_TOOLS_BIN  folder with the Go peers (registry = distribution v3,
#                       crane, regsync), as `export $(scripts/go-tools.sh)` sets
#                       it. Peers not there are left out (said in the output
#                       and the JSON), never fatal.
#   BENCH_WAN_PHASES    sync,cache (default both)
#   BENCH_WAN_TOOLS     sync tools (default skopeo,wharf,regsync,crane)
#   BENCH_WAN_CACHES    caches (default wharf,distribution,distribution3)
#   BENCH_RUNS          sync rounds (default 1; medians over rounds)
#   BENCH_WAN_RATE_MBIT, BENCH_WAN_RTT_MS, BENCH_SYNC_IMAGES, BENCH_SYNC_MIB,
#   BENCH_WAN_CACHE_MIB, BENCH_WAN_PULLERS: override the profile
#   BENCH_DATA          cache of generated image sets (default /tmp/regbench-data)
#   BENCH_LOGDIR        logs of the last run (default /tmp/regbench-logs-wan)
#
# Exit status: 0 all measured; 2 some measurement failed (the report and JSON
# are still written, with "errors"); 1 bad arguments or set-up failure.
set -euo pipefail

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SELF")/.." && pwd)
UP_ADDR=10.77.0.2
SITE_ADDR=10.77.0.1
UP_PORT=5000
UPSTREAM=$UP_ADDR:$UP_PORT

fail() {
  printf 'bench-wan: error: %s\n' "$1" >&2
  [[ -z ${2:-} ]] || printf 'hint: %s\n' "$2" >&2
  exit 1
}

# ------------------------------------------------------------------ profiles
set_profile() {
  case $1 in
    datacenter) RATE_MBIT=1000 RTT_MS=10 IMAGES=20 SET_MIB=2048 CACHE_MIB=1024 PULLERS=20 ;;
    site-uplink) RATE_MBIT=100 RTT_MS=60 IMAGES=20 SET_MIB=512 CACHE_MIB=128 PULLERS=20 ;;
    smoke) RATE_MBIT=200 RTT_MS=20 IMAGES=4 SET_MIB=8 CACHE_MIB=4 PULLERS=4 ;;
    *) fail "unknown profile '$1'" "use datacenter, site-uplink or smoke" ;;
  esac
  RATE_MBIT=${BENCH_WAN_RATE_MBIT:-$RATE_MBIT}
  RTT_MS=${BENCH_WAN_RTT_MS:-$RTT_MS}
  IMAGES=${BENCH_SYNC_IMAGES:-$IMAGES}
  SET_MIB=${BENCH_SYNC_MIB:-$SET_MIB}
  CACHE_MIB=${BENCH_WAN_CACHE_MIB:-$CACHE_MIB}
  PULLERS=${BENCH_WAN_PULLERS:-$PULLERS}
  local v
  for v in RATE_MBIT RTT_MS IMAGES SET_MIB CACHE_MIB PULLERS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || fail "$v must be a whole number, got '${!v}'"
  done
  ((RATE_MBIT > 0)) || fail "the link rate must be above 0 Mbit/s"
  # The capacity probe: about one second of the link, at least 4 MiB.
  PROBE_MIB=$((RATE_MBIT / 8))
  ((PROBE_MIB >= 4)) || PROBE_MIB=4
}

# The shared harness: $BENCH_HARNESS, else `shared/bench` beside the checkout
# or beside one of its parents.
find_harness() {
  local dir=$ROOT
  if [[ -n ${BENCH_HARNESS:-} ]]; then
    [[ -f $BENCH_HARNESS/benchlib.sh ]] || fail "BENCH_HARNESS=$BENCH_HARNESS holds no benchlib.sh" \
      "point BENCH_HARNESS at the folder with benchlib.sh, syncset.py and countproxy.py"
    HARNESS=$(cd "$BENCH_HARNESS" && pwd)
    return
  fi
  while [[ $dir != / ]]; do
    dir=$(dirname "$dir")
    if [[ -f $dir/shared/bench/benchlib.sh ]]; then
      HARNESS=$dir/shared/bench
      return
    fi
  done
  fail "the shared bench harness (shared/bench/benchlib.sh) is not beside this checkout or its parents" \
    "set BENCH_HARNESS to the folder with benchlib.sh, syncset.py and countproxy.py"
}

# ------------------------------------------------------------------ outer part
# Runs in the caller's namespaces: checks, creates the link, runs the inner
# part in the site namespace, and deletes both namespaces whatever happens.
outer() {
  [[ $# -ge 1 && $# -le 2 ]] || fail "usage: scripts/bench-wan.sh PROFILE [OUTJSON]" "PROFILE: datacenter, site-uplink or smoke"
  PROFILE=$1
  set_profile "$PROFILE"
  [[ $(id -u) == 0 ]] || fail "creating network namespaces and tc qdiscs needs root" "run it as root or with sudo"
  local t
  for t in ip tc python3 curl jq skopeo docker-registry unshare sha256sum; do
    command -v "$t" >/dev/null || fail "missing tool: $t" "apt-get install iproute2 python3 curl jq skopeo docker-registry util-linux coreutils"
  done
  [[ -x /usr/bin/time ]] || fail "missing /usr/bin/time" "apt-get install time"
  WHARF=${WHARF:-$ROOT/target/release/wharf}
  [[ -x $WHARF ]] || fail "no wharf binary at $WHARF" "cargo build --release -p wharf, or set WHARF"
  WHARF=$(cd "$(dirname "$WHARF")" && pwd)/$(basename "$WHARF")
  find_harness
  WHARF_BENCH_TOOLS_BIN=${WHARF_BENCH_TOOLS_BIN:-}
  OUTJSON=${2:-}
  [[ -z $OUTJSON || $OUTJSON == /* ]] || OUTJSON=$PWD/$OUTJSON

  NS_SITE=wharf-wan-site-$$
  NS_UP=wharf-wan-up-$$
  INNER_PID=
  trap outer_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  make_link
  export PROFILE RATE_MBIT RTT_MS IMAGES SET_MIB CACHE_MIB PULLERS PROBE_MIB WHARF HARNESS \
    WHARF_BENCH_TOOLS_BIN OUTJSON NS_SITE NS_UP
  ip netns exec "$NS_SITE" bash "$SELF" --inner &
  INNER_PID=$!
  local rc=0
  wait "$INNER_PID" || rc=$?
  INNER_PID=
  return "$rc"
}

outer_cleanup() {
  local rc=$? _
  trap - EXIT INT TERM
  if [[ -n $INNER_PID ]] && kill -0 "$INNER_PID" 2>/dev/null; then
    kill -TERM "$INNER_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$INNER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$INNER_PID" 2>/dev/null && kill -KILL "$INNER_PID" 2>/dev/null
    wait "$INNER_PID" 2>/dev/null || true
  fi
  # The veth pair lives only in these two namespaces: deleting them removes it.
  for ns in "$NS_UP" "$NS_SITE"; do
    if ip netns list | grep -qw "^$ns"; then ip netns del "$ns" || true; fi
  done
  exit "$rc"
}

# Two namespaces and a veth pair created straight inside them (no interface
# ever appears in the caller's namespace), each end limited to RATE_MBIT.
make_link() {
  ip netns add "$NS_SITE"
  ip netns add "$NS_UP"
  ip link add wan0 netns "$NS_SITE" type veth peer name wan0 netns "$NS_UP"
  ip -n "$NS_SITE" addr add "$SITE_ADDR/30" dev wan0
  ip -n "$NS_UP" addr add "$UP_ADDR/30" dev wan0
  local ns burst
  # The bucket holds one millisecond of the rate, and at least one GSO packet.
  burst=$((RATE_MBIT * 1000000 / 8 / 1000))
  ((burst >= 65536 * 2)) || burst=$((65536 * 2))
  for ns in "$NS_SITE" "$NS_UP"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set wan0 up
    tc -n "$ns" qdisc add dev wan0 root tbf rate "${RATE_MBIT}mbit" burst "$burst" latency 25ms
  done
}

# ------------------------------------------------------------------ inner part
# Runs inside the site namespace. benchlib.sh gives the work folder, the
# EXIT trap that stops every process by PID, free ports, /usr/bin/time runs,
# docker-registry and countproxy starters and the image set.
inner() {
  HERE=$HARNESS
  BENCH_NAME=wan-bench
  export BENCH_SYNC_IMAGES=$IMAGES BENCH_SYNC_MIB=$SET_MIB
  # shellcheck source=/dev/null
  . "$HARNESS/benchlib.sh"
  # in the logs folder, which benchlib copies to $LOGDIR on exit
  [[ -n $OUTJSON ]] || { OUTJSON=$WORK/logs/result.json; JSON_AT=$LOGDIR/result.json; }
  mkdir -p "$WORK/home"
  RUNS=${BENCH_RUNS:-1}
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number"
  log "profile $PROFILE: tbf ${RATE_MBIT} Mbit/s, delay line ${RTT_MS} ms RTT; work dir $WORK"
  meta_common
  rec set meta.profile "$(jstr "$PROFILE")"
  rec set meta.wharf "$(jstr "$("$WHARF" --version 2>/dev/null | head -n 1)")"
  rec set link.tbf_rate_mbit "$RATE_MBIT"
  rec set link.delay_rtt_ms "$RTT_MS"
  rec set meta.namespaces "[\"$NS_SITE\",\"$NS_UP\"]"
  rec set meta.load_start "$(load_json)"
  find_peers
  iso_prepare
  prepare_set
  start_upstream
  measure_link
  local phases=${BENCH_WAN_PHASES:-sync,cache}
  [[ ,$phases, == *,sync,* ]] && sync_phase
  [[ ,$phases, == *,cache,* ]] && cache_phase
  rec set meta.load_end "$(load_json)"
  python3 "$HARNESS/results2json.py" "$RES" "$OUTJSON" >/dev/null
  python3 - "$OUTJSON" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
link = r["link"]
def f(v, fmt="{:.2f}"):
    return "–" if v is None else fmt.format(v)
print(f"## WAN profile `{r['meta']['profile']}`: tbf {link['tbf_rate_mbit']} Mbit/s, delay line {link['delay_rtt_ms']} ms RTT\n")
print(f"Link as measured: **{f(link['capacity_mbit'], '{:.0f}')} Mbit/s** ({f(link['capacity_MiBps'], '{:.1f}')} MiB/s) goodput, "
      f"**RTT {f(link['rtt_ms'], '{:.1f}')} ms** for a request on an open connection (the delay line adds {f(link['added_rtt_ms'], '{:.1f}')} ms, "
      f"the upstream itself answers in {f(link['upstream_only_ms'], '{:.1f}')} ms), {f(link['new_conn_ms'], '{:.1f}')} ms on a new connection. "
      f"Load average at start {r['meta']['load_start']['1m']}, at end {r['meta']['load_end']['1m']}.\n")
sync = r.get("sync")
if sync:
    s = r["set"]
    print(f"### Sync: {s['images']} images, {s['distinct_mib']:.1f} MiB of distinct blobs\n")
    print("| tool | cold (s) | cold MiB/s | MiB over the link | link utilisation | cold requests/image (src + dst) | warm (s) | warm requests/image src / dst | cold vs skopeo | warm vs skopeo | digests kept | load (1 min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tool, t in sync.items():
        if not isinstance(t, dict) or "cold_s" not in t:
            continue
        rat = r.get("ratios", {}).get(tool, {})
        print(f"| {tool} | {f(t.get('cold_s'))} | {f(t.get('cold_MBps'), '{:.1f}')} | {f(t.get('cold_link_mib'), '{:.0f}')} | {f(t.get('cold_link_util'), '{:.0%}')} | "
              f"{f(t.get('cold_requests_per_image'), '{:.1f}')} | {f(t.get('warm_s'), '{:.3f}')} | "
              f"{f(t.get('warm_src_requests_per_image'), '{:.1f}')} / {f(t.get('warm_dst_requests_per_image'), '{:.1f}')} | "
              f"{f(rat.get('cold_speedup'), '{:.2f}×')} | {f(rat.get('warm_speedup'), '{:.1f}×')} | "
              f"{t.get('digests_kept', '–')} | {f(t.get('cold_load_1m'))} |")
    print()
cache = r.get("cache")
if cache:
    print(f"### Pull-through: one {cache['blob_mib']} MiB blob; {cache['pullers']} concurrent pulls of "
          f"`{cache['image']}` ({cache['image_blobs']} blobs, {cache['image_mib']:.1f} MiB)\n")
    print("| path | TTFB (ms) | seconds | MiB/s | % of link | TTFB − direct (RTTs) | concurrent pulls (s) | upstream GETs per blob (max) | upstream MiB / image MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, c in cache.items():
        if not isinstance(c, dict) or "cold_s" not in c:
            continue
        print(f"| direct, before {name} | {f(c.get('direct_ttfb_ms'), '{:.1f}')} | {f(c.get('direct_s'))} | {f(c.get('direct_MBps'), '{:.1f}')} | {f(c.get('direct_link_pct'), '{:.0f} %')} | | | | |")
        print(f"| {name}, cold | {f(c.get('cold_ttfb_ms'), '{:.1f}')} | {f(c.get('cold_s'))} | {f(c.get('cold_MBps'), '{:.1f}')} | {f(c.get('cold_link_pct'), '{:.0f} %')} | "
              f"{f(c.get('ttfb_extra_rtts'), '{:+.1f}')} | {f(c.get('concurrent_s'))} | {f(c.get('max_gets_per_blob'), '{:.0f}')} | {f(c.get('upstream_vs_image'), '{:.2f}')} |")
        print(f"| {name}, warm | {f(c.get('warm_ttfb_ms'), '{:.1f}')} | {f(c.get('warm_s'))} | {f(c.get('warm_MBps'), '{:.1f}')} | | | | | |")
    print()
missing = r.get("meta", {}).get("missing_peers")
if missing:
    print(f"Not measured (not built here): {', '.join(missing)}.\n")
if r.get("errors"):
    print("Errors: " + "; ".join(f"{k}: {v}" for k, v in r["errors"].items()) + "\n")
PY
  if had_errors; then
    log "finished with errors (see \"errors\"; logs in $LOGDIR)"
    exit 2
  fi
  log "done; JSON in ${JSON_AT:-$OUTJSON}, logs in $LOGDIR"
}

load_json() { awk '{ printf "{\"1m\": %s, \"5m\": %s, \"15m\": %s}", $1, $2, $3 }' /proc/loadavg; }
load_1m() { awk '{ print $1 }' /proc/loadavg; }

# The Go peers that were built: distribution v3 (`registry`), crane, regsync.
find_peers() {
  local missing=() name
  declare -gA PEER=()
  for name in registry crane regsync; do
    if [[ -n $WHARF_BENCH_TOOLS_BIN && -x $WHARF_BENCH_TOOLS_BIN/$name ]]; then
      PEER[$name]=$WHARF_BENCH_TOOLS_BIN/$name
    else
      missing+=("$name")
    fi
  done
  if ((${#missing[@]})); then
    log "not found in WHARF_BENCH_TOOLS_BIN, left out: ${missing[*]} (export \$(scripts/go-tools.sh) builds and names them)"
    rec set meta.missing_peers "$(printf '%s\n' "${missing[@]}" | jq -R . | jq -sc .)"
  fi
  rec set meta.tools_bin "$(jstr "$WHARF_BENCH_TOOLS_BIN")"
}

# Runs a command in the upstream namespace, in the background, as one of
# benchlib's processes (stopped by PID on exit). `ip netns exec` execs the
# command, so the PID is the command's own.
up_bg() {
  local log=$1
  shift
  ip netns exec "$NS_UP" "$@" >>"$WORK/logs/$log" 2>&1 &
  BG_PIDS+=("$!")
  LAST_PID=$!
}
up_run() { ip netns exec "$NS_UP" "$@"; }

# The upstream: docker-registry on the up namespace's loopback, a counting
# proxy in front of it, and the delay line on the link address in front of that.
start_upstream() {
  UP_REG_PORT=5001
  UP_COUNT_PORT=5002
  mkdir -p "$WORK/upstream"
  cat >"$WORK/upstream.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/upstream
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$UP_REG_PORT
EOF
  up_bg upstream.log docker-registry serve "$WORK/upstream.yml"
  UP_REG_PID=$LAST_PID
  up_wait "127.0.0.1:$UP_REG_PORT" "$UP_REG_PID" upstream.log
  UP_LOG=$WORK/logs/upstream-requests.jsonl
  : >"$UP_LOG"
  up_bg upstream-proxy.log python3 "$HARNESS/countproxy.py" "$UP_COUNT_PORT" "$UP_REG_PORT" "$UP_LOG"
  up_wait "127.0.0.1:$UP_COUNT_PORT" "$LAST_PID" upstream-proxy.log
  up_bg delayline.log python3 "$ROOT/scripts/delayline.py" "$UPSTREAM" "127.0.0.1:$UP_COUNT_PORT" "$RTT_MS" \
    --log "$WORK/logs/delayline-connections.jsonl"
  wait_v2 "http://$UPSTREAM" "$LAST_PID" "$WORK/logs/delayline.log"
  log "pushing the set into the upstream (inside its namespace, not over the link)"
  local j
  j=$(up_run python3 "$HARNESS/syncset.py" push "$SET_DIR" "127.0.0.1:$UP_REG_PORT" 2>"$WORK/logs/push.err") ||
    die "pushing the set into the upstream failed: $(tail -n 2 "$WORK/logs/push.err")"
  rec set set.push "$j"
}

up_wait() {  # HOSTPORT PID LOG: until GET /v2/ answers inside the up namespace
  local _
  for _ in $(seq 1 300); do
    [[ $(up_run curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$1/v2/" || true) == 200 ]] && return 0
    kill -0 "$2" 2>/dev/null || die "upstream process for $1 exited: $(tail -n 5 "$WORK/logs/$3")"
    sleep 0.1
  done
  die "http://$1/v2/ in the upstream namespace did not answer 200 within 30 s"
}

# push_upstream_blob MIB REPO: a new random blob of MIB MiB, pushed inside
# the up namespace (streamed: curl -T, never read into memory); sets
# BLOB_DIGEST and BLOB_BYTES. Returns 1 when the push failed.
push_upstream_blob() {
  local file=/dev/shm/wharf-bench-wan.$$.blob loc
  head -c $(($1 * 1048576)) /dev/urandom >"$file"
  BLOB_DIGEST=sha256:$(sha256sum "$file" | cut -d' ' -f1)
  BLOB_BYTES=$(stat -c %s "$file")
  loc=$(up_run curl -fsS -D - -o /dev/null -X POST "http://127.0.0.1:$UP_REG_PORT/v2/$2/blobs/uploads/" |
    awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
  [[ $loc == http* ]] || loc=http://127.0.0.1:$UP_REG_PORT$loc
  if [[ $loc == *\?* ]]; then loc="$loc&digest=$BLOB_DIGEST"; else loc="$loc?digest=$BLOB_DIGEST"; fi
  local rc=0
  up_run curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -H 'Expect:' -T "$file" "$loc" || rc=1
  rm -f "$file"
  return "$rc"
}

# get URL [EXPECT_BYTES]: one curl GET on a new connection, body discarded;
# sets G_TTFB_MS, G_S (total), G_BODY_S (after the first byte), G_BYTES, G_MBPS
# (MiB/s over the whole request). Returns 1 when the size is not the expected one.
get() {
  local out
  G_CODE=000 G_BYTES=0
  out=$(curl -sS -o /dev/null -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}' "$1") || return 1
  read -r G_CODE G_TTFB G_S G_BYTES <<<"$out"
  G_TTFB_MS=$(awk -v t="$G_TTFB" 'BEGIN { printf "%.2f", t * 1000 }')
  G_BODY_S=$(fsub "$G_S" "$G_TTFB")
  G_MBPS=$(awk -v b="$G_BYTES" -v s="$G_S" 'BEGIN { printf "%.2f", b / 1048576 / s }')
  [[ $G_CODE == 200 ]] || return 1
  [[ -z ${2:-} || $G_BYTES == "$2" ]]
}

# The link as the tools see it, printed before anything is measured over it.
measure_link() {
  log "measuring the link"
  push_upstream_blob "$PROBE_MIB" wan/probe || die "pushing the capacity probe's blob into the upstream failed"
  local url=http://$UPSTREAM/v2/wan/probe/blobs/$BLOB_DIGEST i caps=() rtts=() news=()
  for i in 1 2 3; do
    get "$url" "$BLOB_BYTES" || die "the capacity probe GET failed (HTTP ${G_CODE:-?}, ${G_BYTES:-0} bytes)"
    # goodput after the first byte: the delay line's RTT is not capacity
    caps+=("$(awk -v b="$BLOB_BYTES" -v s="$G_BODY_S" 'BEGIN { printf "%.3f", b * 8 / 1e6 / s }')")
  done
  # RTT: 11 GETs of /v2/ on one connection (the first also pays the
  # connection), over the link and, for the time the upstream itself takes,
  # inside its namespace without the link and the delay line.
  local base=()
  mapfile -t rtts < <(rtt_probe curl)
  mapfile -t base < <(rtt_probe up_run curl "127.0.0.1:$UP_COUNT_PORT")
  ((${#rtts[@]} == 11 && ${#base[@]} == 11)) || die "the RTT probe got ${#rtts[@]} and ${#base[@]} of 11 answers"
  for i in 1 2 3 4 5; do
    news+=("$(curl -sS -o /dev/null -w '%{time_starttransfer}' "http://$UPSTREAM/v2/" | awk '{ printf "%.3f", $1 * 1000 }')")
  done
  CAP_MBIT=$(median "${caps[@]}")
  CAP_MIBPS=$(awk -v m="$CAP_MBIT" 'BEGIN { printf "%.3f", m * 1e6 / 8 / 1048576 }')
  LINK_RTT_MS=$(median "${rtts[@]:1}")
  BASE_MS=$(median "${base[@]:1}")
  NEW_CONN_MS=$(median "${news[@]}")
  rec set link.capacity_mbit "$CAP_MBIT"
  rec set link.capacity_MiBps "$CAP_MIBPS"
  rec set link.capacity_runs_mbit "[$(IFS=,; echo "${caps[*]}")]"
  rec set link.rtt_ms "$LINK_RTT_MS"
  rec set link.rtt_runs_ms "[$(IFS=,; echo "${rtts[*]:1}")]"
  rec set link.new_conn_ms "$NEW_CONN_MS"
  rec set link.upstream_only_ms "$BASE_MS"
  rec set link.added_rtt_ms "$(fsub "$LINK_RTT_MS" "$BASE_MS")"
  rec set link.probe_mib "$PROBE_MIB"
  printf '[%s] link: %s Mbit/s goodput (%s MiB/s; tbf rate %s Mbit/s); RTT %s ms (the delay line adds %s ms, set to %s ms; the upstream answers in %s ms); request on a new connection %s ms\n' \
    "$(date +%T)" "$CAP_MBIT" "$CAP_MIBPS" "$RATE_MBIT" "$LINK_RTT_MS" "$(fsub "$LINK_RTT_MS" "$BASE_MS")" "$RTT_MS" "$BASE_MS" "$NEW_CONN_MS" >&2
}

# rtt_probe [PREFIX...] [HOSTPORT]: TTFB in ms of 11 GETs of /v2/ on one
# connection, one per line (the first includes connecting).
rtt_probe() {
  local hostport=$UPSTREAM i args=() cmd=("$@")
  if [[ ${cmd[-1]} == *:* ]]; then hostport=${cmd[-1]}; unset 'cmd[-1]'; fi
  for i in $(seq 1 11); do args+=(-o /dev/null "http://$hostport/v2/"); done
  "${cmd[@]}" -sS -w '%{time_starttransfer}\n' "${args[@]}" 2>/dev/null | awk '{ printf "%.3f\n", $1 * 1000 }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ------------------------------------------------------------------ sync
sync_phase() {
  local tools=${BENCH_WAN_TOOLS:-skopeo,wharf,regsync,crane} tool r order=()
  IFS=, read -r -a order <<<"$tools"
  local usable=()
  for tool in "${order[@]}"; do
    case $tool in
      skopeo | wharf) usable+=("$tool") ;;
      regsync | crane) [[ -n ${PEER[$tool]:-} ]] && usable+=("$tool") ;;
      *) die "unknown sync tool '$tool' in BENCH_WAN_TOOLS (skopeo, wharf, regsync, crane)" ;;
    esac
  done
  python3 "$HARNESS/syncset.py" list "$SET_DIR" "$UPSTREAM" >"$WORK/list.txt"
  python3 "$HARNESS/syncset.py" yaml "$SET_DIR" "$UPSTREAM" >"$WORK/skopeo-src.yaml"
  rec set meta.sync_tools "$(printf '%s\n' "${usable[@]}" | jq -R . | jq -sc .)"
  declare -gA KEPT=()
  for r in $(seq 1 "$RUNS"); do
    # alternate the order from round to round
    local round=("${usable[@]}")
    if ((r % 2 == 0)); then mapfile -t round < <(printf '%s\n' "${usable[@]}" | tac); fi
    for tool in "${round[@]}"; do sync_tool "$tool" "$r"; done
  done
  for tool in "${usable[@]}"; do
    rec set "sync.$tool.digests_kept" "$(jstr "${KEPT[$tool]:-none}")"
    if [[ $tool != skopeo && " ${usable[*]} " == *" skopeo "* ]]; then
      rec ratio "ratios.$tool.cold_speedup" "[\"sync.skopeo.cold_s\",\"sync.$tool.cold_s\"]"
      rec ratio "ratios.$tool.warm_speedup" "[\"sync.skopeo.warm_s\",\"sync.$tool.warm_s\"]"
    fi
  done
}

# The command of TOOL for the destination DST (HOST:PORT); sets RUN_CMD.
sync_command() {
  local tool=$1 dst=$2 r=$3 i
  case $tool in
    skopeo)
      mkdir -p "$WORK/skopeo-cache-$r" "$WORK/skopeo-tmp"
      RUN_CMD=("${ISO[@]}" "$WORK/skopeo-cache-$r" skopeo --insecure-policy --tmpdir "$WORK/skopeo-tmp" sync
        --src yaml --dest docker --dest-tls-verify=false --preserve-digests "$WORK/skopeo-src.yaml" "$dst/library")
      ;;
    wharf)
      RUN_CMD=("$WHARF" sync --to "$dst" --flatten --insecure="$UPSTREAM" --insecure="$dst" "$WORK/list.txt")
      ;;
    regsync)
      # parallel: 4, as regsync's own examples do; default settings otherwise
      {
        printf 'version: 1\ncreds:\n  - registry: %s\n    tls: disabled\n  - registry: %s\n    tls: disabled\n' "$UPSTREAM" "$dst"
        printf 'defaults:\n  parallel: 4\nsync:\n'
        while read -r ref; do
          printf '  - source: %s\n    target: %s\n    type: image\n' "$ref" "$dst/${ref#*/}"
        done <"$WORK/list.txt"
      } >"$WORK/regsync-$r.yml"
      RUN_CMD=(env HOME="$WORK/home" "${PEER[regsync]}" once -c "$WORK/regsync-$r.yml")
      ;;
    crane)
      # one `crane copy` per image, as a list is copied with crane
      {
        printf 'set -e\n'
        while read -r ref; do printf '%q copy --insecure %q %q\n' "${PEER[crane]}" "$ref" "$dst/${ref#*/}"; done <"$WORK/list.txt"
      } >"$WORK/crane-$r.sh"
      RUN_CMD=(env HOME="$WORK/home" sh "$WORK/crane-$r.sh")
      ;;
  esac
}

sync_tool() {
  local tool=$1 r=$2
  start_registry "dst-$tool-r$r"
  local dst_pid=$REG_PID dst_root=$REG_ROOT dst_port=$REG_PORT
  local dst_log=$WORK/logs/dst-$tool-r$r.jsonl
  start_proxy "$dst_port" "$dst_log"
  local proxy_pid=$PROXY_PID
  sync_command "$tool" "127.0.0.1:$PROXY_PORT" "$r"
  local phase
  for phase in cold warm; do
    sync_run "$tool" "$r" "$phase" "$dst_log" "$dst_port" "$dst_pid" || break
  done
  stop_pid "$proxy_pid"
  forget_pid "$proxy_pid"
  stop_registry "$dst_pid" "$dst_root"
}

# sync_run TOOL ROUND PHASE DST_LOG DST_PORT DST_PID: one timed run and its figures
sync_run() {
  local tool=$1 r=$2 phase=$3 dst_log=$4 dst_port=$5 dst_pid=$6
  local p=sync.$tool.$phase s0 d0 dc0 sj dj cj load
  s0=$(wc -l <"$UP_LOG")
  d0=$(wc -l <"$dst_log")
  dc0=$(cpu_s "$dst_pid")
  sync
  log "  $tool $phase (round $r)"
  load=$(load_1m)
  run_timed "$tool-$phase-r$r" "${RUN_CMD[@]}"
  if [[ $T_RC != 0 ]]; then
    err "sync.$tool.$phase" "round $r: exit status $T_RC: $(tail -n 3 "$WORK/logs/$tool-$phase-r$r.log" | tr '\n' ' ' | cut -c1-400)"
    return 1
  fi
  settle_log "$UP_LOG"
  settle_log "$dst_log"
  sj=$(python3 "$HARNESS/countproxy.py" --summary "$UP_LOG" "$s0")
  dj=$(python3 "$HARNESS/countproxy.py" --summary "$dst_log" "$d0")
  rec run "sync.$tool.${phase}_s" "$T_WALL"
  rec run "sync.$tool.${phase}_cpu_s" "$T_CPU"
  rec run "sync.$tool.${phase}_peak_rss_mib" "$T_RSS_MIB"
  rec run "sync.$tool.${phase}_dst_server_cpu_s" "$(fsub "$(cpu_s "$dst_pid")" "$dc0")"
  rec run "sync.$tool.${phase}_load_1m" "$load"
  rec run "sync.$tool.${phase}_src_requests" "$(jq '.requests' <<<"$sj")"
  rec run "sync.$tool.${phase}_dst_requests" "$(jq '.requests' <<<"$dj")"
  rec run "sync.$tool.${phase}_src_connections" "$(jq '.connections + .non_http_connections' <<<"$sj")"
  rec run "sync.$tool.${phase}_src_requests_per_image" "$(jq --argjson n "$IMAGES" '(.requests_no_ping / $n * 100 | round) / 100' <<<"$sj")"
  rec run "sync.$tool.${phase}_dst_requests_per_image" "$(jq --argjson n "$IMAGES" '(.requests_no_ping / $n * 100 | round) / 100' <<<"$dj")"
  rec run "sync.$tool.${phase}_requests_per_image" "$(jq -n --argjson s "$sj" --argjson d "$dj" --argjson n "$IMAGES" \
    '(($s.requests_no_ping + $d.requests_no_ping) / $n * 100 | round) / 100')"
  rec run "sync.$tool.${phase}_link_mib" "$(mib "$(jq '.bytes_out + .bytes_in' <<<"$sj")")"
  if [[ $phase == cold ]]; then
    rec run "sync.$tool.cold_MBps" "$(fdiv "$SET_DISTINCT_MIB" "$T_WALL")"
    rec run "sync.$tool.cold_link_util" "$(jq -n --argjson s "$sj" --arg t "$T_WALL" --arg c "$CAP_MIBPS" \
      '((($s.bytes_out + $s.bytes_in) / 1048576) / (($c | tonumber) * ($t | tonumber)) * 1000 | round) / 1000')"
  fi
  rec set "sync.$tool.${phase}_detail" "$(jq -cn --argjson s "$sj" --argjson d "$dj" '{src: $s, dst: $d}')"
  log "    ${T_WALL}s, cpu ${T_CPU}s; $(jq -r '"\(.requests) requests over the link, \(.bytes_out / 1048576 | floor) MiB"' <<<"$sj"), $(jq -r '"\(.requests) at the destination"' <<<"$dj")"
  cj=$(python3 "$HARNESS/syncset.py" check "$SET_DIR" "127.0.0.1:$dst_port" || true)
  rec run "sync.$tool.${phase}_digests_ok" "$(jq '.ok' <<<"$cj")"
  if [[ $(jq '.ok == .checked' <<<"$cj") == true ]]; then
    [[ ${KEPT[$tool]:-} == false ]] || KEPT[$tool]=true
  else
    KEPT[$tool]=false
    rec set "sync.$tool.${phase}_digest_check" "$cj"
    err "sync.$tool.${phase}_digests" "round $r: $(jq -r '"\(.checked - .ok) of \(.checked) manifests differ at the destination"' <<<"$cj")"
  fi
}

# Waits until LOG stops growing (countproxy logs a request once its response
# has been relayed, a moment after the client saw it).
settle_log() {
  local n m _
  n=$(wc -l <"$1")
  for _ in $(seq 1 50); do
    sleep 0.1
    m=$(wc -l <"$1")
    [[ $m == "$n" ]] && return 0
    n=$m
  done
}

# ------------------------------------------------------------------ cache
cache_phase() {
  local caches=${BENCH_WAN_CACHES:-wharf,distribution,distribution3} name usable=()
  IFS=, read -r -a caches <<<"$caches"
  for name in "${caches[@]}"; do
    case $name in
      wharf | distribution) usable+=("$name") ;;
      distribution3) [[ -n ${PEER[registry]:-} ]] && usable+=("$name") ;;
      *) die "unknown cache '$name' in BENCH_WAN_CACHES (wharf, distribution, distribution3)" ;;
    esac
  done
  log "cache phase: a $CACHE_MIB MiB blob in the upstream"
  if ! push_upstream_blob "$CACHE_MIB" wan/cacheblob; then
    err cache "pushing the $CACHE_MIB MiB blob into the upstream failed"
    return
  fi
  CACHE_DIGEST=$BLOB_DIGEST CACHE_BYTES=$BLOB_BYTES
  # The image for the concurrent pulls: the set's image with the most blobs.
  IMAGE_REPO=$(jq -r '.images | max_by(.blobs | length) | .repo' "$SET_DIR/images.json")
  IMAGE_BLOBS=$(jq -r --arg r "$IMAGE_REPO" '.images[] | select(.repo == $r) | .blobs | length' "$SET_DIR/images.json")
  IMAGE_BYTES=$(jq -r --arg r "$IMAGE_REPO" '.images[] | select(.repo == $r) | [.blobs[].size] | add' "$SET_DIR/images.json")
  rec set cache.blob_mib "$CACHE_MIB"
  rec set cache.pullers "$PULLERS"
  rec set cache.image "$(jstr "$IMAGE_REPO:v1")"
  rec set cache.image_blobs "$IMAGE_BLOBS"
  rec set cache.image_mib "$(mib "$IMAGE_BYTES")"
  for name in "${usable[@]}"; do cache_one "$name"; done
  if [[ " ${usable[*]} " == *" wharf "* ]]; then
    for name in "${usable[@]}"; do
      [[ $name == wharf ]] && continue
      rec ratio "ratios.cache.wharf_vs_$name.cold_MBps" "[\"cache.wharf.cold_MBps\",\"cache.$name.cold_MBps\"]"
    done
  fi
}

# start_cache NAME: the cache, empty, on a free port of the site's loopback;
# sets CACHE_PID, CACHE_BASE (URL prefix of repositories) and CACHE_QUERY.
start_cache() {
  local name=$1 port
  port=$(free_port)
  mkdir -p "$WORK/cache-$name"
  case $name in
    wharf)
      cat >"$WORK/cache-$name.toml" <<EOF
[[upstream]]
host = "upstream.wan"
endpoint = "http://$UPSTREAM"
EOF
      "$WHARF" serve --listen "127.0.0.1:$port" --root "$WORK/cache-$name" --config "$WORK/cache-$name.toml" \
        >>"$WORK/logs/cache-$name.log" 2>&1 &
      CACHE_PREFIX=upstream.wan/
      ;;
    distribution | distribution3)
      cat >"$WORK/cache-$name.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/cache-$name
http:
  addr: 127.0.0.1:$port
proxy:
  remoteurl: http://$UPSTREAM
EOF
      local bin=docker-registry
      [[ $name == distribution3 ]] && bin=${PEER[registry]}
      OTEL_TRACES_EXPORTER=none "$bin" serve "$WORK/cache-$name.yml" >>"$WORK/logs/cache-$name.log" 2>&1 &
      CACHE_PREFIX=
      ;;
  esac
  CACHE_PID=$!
  BG_PIDS+=("$CACHE_PID")
  CACHE_URL=http://127.0.0.1:$port
  wait_v2 "$CACHE_URL" "$CACHE_PID" "$WORK/logs/cache-$name.log"
}

cache_one() {
  local name=$1 c=cache.$1 u0
  log "  $name"
  start_cache "$name"
  local blob_path=v2/${CACHE_PREFIX}wan/cacheblob/blobs/$CACHE_DIGEST
  if get "http://$UPSTREAM/v2/wan/cacheblob/blobs/$CACHE_DIGEST" "$CACHE_BYTES"; then
    rec run "$c.direct_ttfb_ms" "$G_TTFB_MS"
    rec run "$c.direct_s" "$G_S"
    rec run "$c.direct_MBps" "$G_MBPS"
    rec run "$c.direct_link_pct" "$(awk -v m="$G_MBPS" -v c="$CAP_MIBPS" 'BEGIN { printf "%.1f", 100 * m / c }')"
    local direct_ttfb=$G_TTFB_MS
  else
    err "$c.direct" "direct GET from the upstream: HTTP $G_CODE, $G_BYTES of $CACHE_BYTES bytes"
  fi
  rec run "$c.cold_load_1m" "$(load_1m)"
  u0=$(wc -l <"$UP_LOG")
  if get "$CACHE_URL/$blob_path" "$CACHE_BYTES"; then
    rec run "$c.cold_ttfb_ms" "$G_TTFB_MS"
    rec run "$c.cold_s" "$G_S"
    rec run "$c.cold_MBps" "$G_MBPS"
    rec run "$c.cold_link_pct" "$(awk -v m="$G_MBPS" -v c="$CAP_MIBPS" 'BEGIN { printf "%.1f", 100 * m / c }')"
    [[ -n ${direct_ttfb:-} ]] && rec run "$c.ttfb_extra_rtts" \
      "$(awk -v a="$G_TTFB_MS" -v d="$direct_ttfb" -v r="$LINK_RTT_MS" 'BEGIN { printf "%.2f", (a - d) / r }')"
  else
    err "$c.cold" "cold GET through the cache: HTTP $G_CODE, $G_BYTES of $CACHE_BYTES bytes"
  fi
  settle_log "$UP_LOG"
  rec set "$c.cold_upstream" "$(python3 "$HARNESS/countproxy.py" --summary "$UP_LOG" "$u0" | jq -c '{requests, connections, by_kind, blob_mib: (.blob_bytes_out / 1048576 * 100 | round / 100)}')"
  # The warm GET once the cache holds the blob (distribution stores it
  # after the cold response, wharf commits before the last byte).
  local _
  for _ in $(seq 1 100); do
    get "$CACHE_URL/$blob_path" "$CACHE_BYTES" && break
    sleep 0.1
  done
  u0=$(wc -l <"$UP_LOG")
  if get "$CACHE_URL/$blob_path" "$CACHE_BYTES"; then
    rec run "$c.warm_ttfb_ms" "$G_TTFB_MS"
    rec run "$c.warm_s" "$G_S"
    rec run "$c.warm_MBps" "$G_MBPS"
  else
    err "$c.warm" "warm GET through the cache: HTTP $G_CODE, $G_BYTES of $CACHE_BYTES bytes"
  fi
  settle_log "$UP_LOG"
  rec run "$c.warm_upstream_blob_gets" "$(python3 "$HARNESS/countproxy.py" --summary "$UP_LOG" "$u0" | jq '.by_kind["GET blob"] // 0')"
  concurrent_pulls "$name"
  stop_pid "$CACHE_PID"
  forget_pid "$CACHE_PID"
  rm -rf "$WORK/cache-$name"
}

# PULLERS clients pull IMAGE (manifest by tag, then every blob) through the
# cache at once, all cold; the upstream log says how often each blob crossed.
concurrent_pulls() {
  local name=$1 c=cache.$1 u0 t0 t1 i pids=() bad=0
  local base=$CACHE_URL/v2/$CACHE_PREFIX$IMAGE_REPO
  u0=$(wc -l <"$UP_LOG")
  t0=$EPOCHREALTIME
  for i in $(seq 1 "$PULLERS"); do
    pull_image "$base" >"$WORK/pull-$name-$i.log" 2>&1 &
    pids+=("$!")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[i]}" && continue
    bad=$((bad + 1))
    cp "$WORK/pull-$name-$((i + 1)).log" "$WORK/logs/"
  done
  t1=$EPOCHREALTIME
  settle_log "$UP_LOG"
  rec run "$c.concurrent_s" "$(fsub "$t1" "$t0")"
  rec run "$c.concurrent_failed" "$bad"
  ((bad == 0)) || err "$c.concurrent" "$bad of $PULLERS pulls failed: $(cat "$WORK"/logs/pull-"$name"-*.log | head -c 300)"
  local per
  per=$(tail -n +"$((u0 + 1))" "$UP_LOG" | jq -s -c '[.[] | select(.m == "GET" and (.p | test("/blobs/sha256:")))
      | {d: (.p | capture("/blobs/(?<d>sha256:[0-9a-f]+)").d), out}] | group_by(.d)
      | {blobs: length, gets: (map(length) | add // 0), max_gets_per_blob: (map(length) | max // 0),
         bytes: (map(map(.out) | add) | add // 0)}')
  rec run "$c.upstream_blob_gets" "$(jq '.gets' <<<"$per")"
  rec run "$c.max_gets_per_blob" "$(jq '.max_gets_per_blob' <<<"$per")"
  rec run "$c.upstream_vs_image" "$(jq --argjson i "$IMAGE_BYTES" '(.bytes / $i * 100 | round) / 100' <<<"$per")"
  rec set "$c.concurrent_upstream" "$(python3 "$HARNESS/countproxy.py" --summary "$UP_LOG" "$u0" | jq -c '{requests, connections, by_kind, status}')"
}

# pull_image BASE: GET BASE/manifests/v1, then each blob it names, checking sizes.
pull_image() {
  local base=$1 manifest d size got
  manifest=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
    "$base/manifests/v1") || { echo "manifest GET failed"; return 1; }
  while read -r d size; do
    got=$(curl -fsS -o /dev/null -w '%{size_download}' "$base/blobs/$d") || { echo "GET $d failed"; return 1; }
    [[ $got == "$size" ]] || { echo "GET $d: $got of $size bytes"; return 1; }
  done < <(jq -r '(.config, .layers[]) | "\(.digest) \(.size)"' <<<"$manifest")
}

if [[ ${1:-} == --inner ]]; then
  inner
else
  outer "$@"
fi
