#!/usr/bin/env bash
# Cold and warm pulls of one blob through wharf's pull-through cache, against
# a direct pull from the upstream and distribution's proxy mode
# (docker-registry with proxy.remoteurl), in the same run on this machine.
#
#   cargo build --release -p wharf
#   scripts/bench-cache.sh [SIZE_MIB] [ROUNDS]     (defaults 512, 3)
#
# The upstream is a plain `wharf serve` on loopback. Each round pushes a new
# random blob upstream (generated on tmpfs, so the disk serves only the
# registries) and pulls it directly, cold and warm through wharf's cache, from
# the upstream again (a plain wharf pull), and cold and warm through the
# proxy; warm and plain alternate their order from round to round. Prints
# time to first byte and throughput as curl measures them (MB = MiB), the CPU
# seconds each server spent on the pull, the machine's idle CPU seconds
# meanwhile (from /proc: a cold pull on a small machine is bound by CPU) and
# the cache's minor page faults, and
# per round the ratios cold/direct and warm/plain.
set -euo pipefail

SIZE_MIB=${1:-512}
ROUNDS=${2:-3}
WHARF=${WHARF:-target/release/wharf}
REGISTRY=${REGISTRY:-docker-registry}
WORK=$(mktemp -d /tmp/wharf-bench-cache.XXXXXX)
INPUT=$(mktemp -d /dev/shm/wharf-bench-cache.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" "$INPUT"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_up() {
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "http://127.0.0.1:$1/v2/" && return 0
        sleep 0.05
    done
    echo "server on port $1 did not start" >&2
    exit 1
}

UP=$(free_port); CACHE=$(free_port); PROXY=$(free_port)

"$WHARF" serve --listen 127.0.0.1:$UP --root "$WORK/upstream" 2>"$WORK/upstream.log" &
PIDS+=($!); UP_PID=$!
cat >"$WORK/cache.toml" <<TOML
[[upstream]]
host = "upstream.bench"
endpoint = "http://127.0.0.1:$UP"
TOML
"$WHARF" serve --listen 127.0.0.1:$CACHE --root "$WORK/cache" --config "$WORK/cache.toml" 2>"$WORK/cache.log" &
PIDS+=($!); CACHE_PID=$!
cat >"$WORK/proxy.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/proxy
http:
  addr: 127.0.0.1:$PROXY
proxy:
  remoteurl: http://127.0.0.1:$UP
YAML
"$REGISTRY" serve "$WORK/proxy.yml" >"$WORK/proxy.log" 2>&1 &
PIDS+=($!); PROXY_PID=$!
wait_up $UP; wait_up $CACHE; wait_up $PROXY

wait_stored() {
    local hex=${DIGEST#sha256:}
    for _ in $(seq 1 600); do
        [ -f "$1/blobs/sha256/${hex:0:2}/$hex" ] && return 0
        [ -f "$1/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data" ] && return 0
        sleep 0.05
    done
    echo "the blob never reached $1" >&2
    exit 1
}

# CPU ticks (user + system) a process has used, its minor page faults, and
# the machine's idle ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
faults() { awk '{print $10}' "/proc/$1/stat"; }
idle() { awk '/^cpu /{print $5}' /proc/stat; }
HZ=$(getconf CLK_TCK)

# One pull, checking the bytes: TTFB, total time, MB/s (kept in $LAST), and
# the CPU seconds the servers and the idle machine spent during the transfer.
row() {
    local u0 c0 p0 i0 f0 out cpu got
    printf '%-36s' "$1"
    u0=$(ticks $UP_PID); c0=$(ticks $CACHE_PID); p0=$(ticks $PROXY_PID); i0=$(idle)
    f0=$(faults $CACHE_PID)
    out=$(curl -fsS -o "$INPUT/got" -w '%{time_starttransfer} %{time_total} %{speed_download}' "$2")
    cpu="$(($(ticks $UP_PID) - u0)) $(($(ticks $CACHE_PID) - c0)) $(($(ticks $PROXY_PID) - p0)) $(($(idle) - i0))"
    cpu="$cpu $(($(faults $CACHE_PID) - f0))"
    got=sha256:$(sha256sum "$INPUT/got" | cut -d' ' -f1)
    rm -f "$INPUT/got"
    [ "$got" = "$DIGEST" ] || { echo "wrong bytes from $2" >&2; exit 1; }
    LAST=$(awk '{printf "%.0f", $3/1048576}' <<<"$out")
    awk -v hz="$HZ" -v cpu="$cpu" 'BEGIN {split(cpu, c, " ")}
        {printf "%8.1f ms  %7.2f s  %6.0f MB/s   CPU-s: upstream %.2f cache %.2f proxy %.2f, idle %.2f; cache faults %d\n",
         $1*1000, $2, $3/1048576, c[1]/hz, c[2]/hz, c[3]/hz, c[4]/hz, c[5]}' <<<"$out"
}

echo "blob: $SIZE_MIB MiB, $ROUNDS rounds; TTFB, total time, throughput"
for round in $(seq 1 "$ROUNDS"); do
    head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$INPUT/blob"
    DIGEST=sha256:$(sha256sum "$INPUT/blob" | cut -d' ' -f1)
    curl -fsS -X POST --data-binary @"$INPUT/blob" -H 'Content-Type: application/octet-stream' \
        "http://127.0.0.1:$UP/v2/library/bench/blobs/uploads/?digest=$DIGEST" -o /dev/null
    rm "$INPUT/blob"
    direct_url="http://127.0.0.1:$UP/v2/library/bench/blobs/$DIGEST"
    cache_url="http://127.0.0.1:$CACHE/v2/library/bench/blobs/$DIGEST?ns=upstream.bench"
    proxy_url="http://127.0.0.1:$PROXY/v2/library/bench/blobs/$DIGEST"
    echo "round $round"
    row "  direct from upstream (wharf)" "$direct_url"; direct=$LAST
    row "  cold through wharf cache" "$cache_url"; cold=$LAST
    wait_stored "$WORK/cache"
    if [ $((round % 2)) = 1 ]; then
        row "  warm through wharf cache" "$cache_url"; warm=$LAST
        row "  plain wharf pull (upstream again)" "$direct_url"; plain=$LAST
    else
        row "  plain wharf pull (upstream again)" "$direct_url"; plain=$LAST
        row "  warm through wharf cache" "$cache_url"; warm=$LAST
    fi
    row "  cold through distribution proxy" "$proxy_url"
    wait_stored "$WORK/proxy"
    row "  warm through distribution proxy" "$proxy_url"
    awk -v c="$cold" -v d="$direct" -v w="$warm" -v p="$plain" \
        'BEGIN {printf "  cold/direct %.0f %%   warm/plain %.0f %%\n", 100*c/d, 100*w/p}'
done
