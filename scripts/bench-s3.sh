#!/usr/bin/env bash
# scripts/bench-s3.sh [OUTDIR]
#
# Object-storage benchmark, in one sitting on the same machine:
#   wharf serve on S3        (Garage on loopback, path-style, no redirect)
#   wharf serve on disk      (filesystem storage, for reference)
#   docker-registry on S3    (CNCF distribution with its s3 driver, same Garage)
# Figures: blob push MB/s (monolithic, and in 16 MiB PATCH chunks), blob
# pull MB/s, manifest GET req/s and p99 (wrk -c64). Needs garage, curl, jq,
# wrk and docker-registry (apt-get install docker-registry wrk).
# Results go to OUTDIR/results.md (default /tmp/wharf-bench-s3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-/tmp/wharf-bench-s3}
SIZE_MIB=${SIZE_MIB:-512}
CHUNK_MIB=16
ROUNDS=${ROUNDS:-3}
WRK_SECONDS=${WRK_SECONDS:-10}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is needed: $2" >&2; exit 1; }; }
need garage "cargo install garage --locked --version 2.5.0"
need curl "apt-get install curl"
need jq "apt-get install jq"
need wrk "apt-get install wrk"
need docker-registry "apt-get install docker-registry"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Poll COMMAND until it succeeds (60 s at most).
until_ok() {
    local i
    for i in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "error: gave up waiting for: $*" >&2
    return 1
}

start_garage() {
    local rpc s3 admin
    rpc=$(free_port); s3=$(free_port); admin=$(free_port)
    GARAGE_CFG=$WORK/garage.toml
    cat >"$GARAGE_CFG" <<EOF
metadata_dir = "$WORK/garage/meta"
data_dir = "$WORK/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
    RUST_LOG=garage=warn garage -c "$GARAGE_CFG" server >"$WORK/garage.log" 2>&1 &
    PIDS+=($!)
    until_ok garage -c "$GARAGE_CFG" node id -q
    local node
    node=$(garage -c "$GARAGE_CFG" node id -q | cut -d@ -f1)
    garage -c "$GARAGE_CFG" layout assign -z dc1 -c 10G "$node" >/dev/null
    garage -c "$GARAGE_CFG" layout apply --version 1 >/dev/null
    local key
    key=$(garage -c "$GARAGE_CFG" key create bench)
    KEY_ID=$(awk '/Key ID/ {print $NF}' <<<"$key")
    SECRET=$(awk '/Secret key/ {print $NF}' <<<"$key")
    for bucket in wharf-bench dist-bench; do
        until_ok garage -c "$GARAGE_CFG" bucket create "$bucket"
        garage -c "$GARAGE_CFG" bucket allow --read --write --owner "$bucket" --key "$KEY_ID" >/dev/null
    done
    S3_ENDPOINT=http://127.0.0.1:$s3
}

# bench NAME URL: push, pull and manifest figures for the registry at URL.
bench() {
    local name=$1 url=$2 repo=bench/$1 i loc t0 t1 push=() chunked=() pull=()
    local blob=$WORK/blob digest
    digest=sha256:$(sha256sum "$blob" | cut -d' ' -f1)
    for i in $(seq 1 "$ROUNDS"); do
        # A fresh repository each round; the blob is deleted between rounds so
        # every push really uploads.
        loc=$(curl -fsS -D - -o /dev/null -X POST "$url/v2/$repo$i/blobs/uploads/" | awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
        [[ $loc == http* ]] || loc=$url$loc
        if [[ $loc == *\?* ]]; then loc="$loc&digest=$digest"; else loc="$loc?digest=$digest"; fi
        t0=$(date +%s.%N)
        curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$blob" "$loc"
        t1=$(date +%s.%N)
        push+=("$(rate "$t0" "$t1")")
        curl -fsS -o /dev/null -X DELETE "$url/v2/$repo$i/blobs/$digest" || true

        loc=$(curl -fsS -D - -o /dev/null -X POST "$url/v2/${repo}c$i/blobs/uploads/" | awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
        [[ $loc == http* ]] || loc=$url$loc
        t0=$(date +%s.%N)
        local off=0 part hdr
        for part in "$WORK"/chunk.*; do
            local n
            n=$(stat -c %s "$part")
            hdr=$(curl -fsS -D - -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' \
                -H "Content-Range: $off-$((off + n - 1))" --data-binary @"$part" "$loc")
            loc=$(awk 'tolower($1)=="location:" {print $2}' <<<"$hdr" | tr -d '\r')
            [[ $loc == http* ]] || loc=$url$loc
            off=$((off + n))
        done
        if [[ $loc == *\?* ]]; then loc="$loc&digest=$digest"; else loc="$loc?digest=$digest"; fi
        curl -fsS -o /dev/null -X PUT "$loc"
        t1=$(date +%s.%N)
        chunked+=("$(rate "$t0" "$t1")")

        t0=$(date +%s.%N)
        curl -fsS -L -o /dev/null "$url/v2/${repo}c$i/blobs/$digest"
        t1=$(date +%s.%N)
        pull+=("$(rate "$t0" "$t1")")
    done
    # A manifest to GET: config + the big blob as its layer.
    local config='{"architecture":"amd64","os":"linux"}' cdigest manifest
    cdigest=sha256:$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
    loc=$(curl -fsS -D - -o /dev/null -X POST "$url/v2/${repo}c1/blobs/uploads/" | awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
    [[ $loc == http* ]] || loc=$url$loc
    if [[ $loc == *\?* ]]; then loc="$loc&digest=$cdigest"; else loc="$loc?digest=$cdigest"; fi
    printf '%s' "$config" | curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @- "$loc"
    manifest=$(jq -cn --arg c "$cdigest" --arg l "$digest" --argjson cs ${#config} --argjson ls $((SIZE_MIB * 1024 * 1024)) \
        '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$c,size:$cs},layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip",digest:$l,size:$ls}]}')
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$manifest" "$url/v2/${repo}c1/manifests/latest"
    local wrk_out
    wrk_out=$(wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$url/v2/${repo}c1/manifests/latest")
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$wrk_out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$wrk_out")
    median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]}'; }
    printf '| %s | %s | %s | %s | %.0f | %s |\n' "$name" "$(median "${push[@]}")" "$(median "${chunked[@]}")" \
        "$(median "${pull[@]}")" "$rps" "$p99" | tee -a "$OUT/results.md"
}

rate() { awk -v s="$SIZE_MIB" -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", s / (b - a)}'; }

wait_http() { until_ok curl -fsS -o /dev/null "$1/v2/"; }

echo "building wharf (release)"
cargo build --release -q -p wharf
WHARF=${CARGO_TARGET_DIR:-target}/release/wharf

head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/blob"
split -b $((CHUNK_MIB * 1024 * 1024)) -d -a 4 "$WORK/blob" "$WORK/chunk."
start_garage

{
    echo "SIZE_MIB=$SIZE_MIB ROUNDS=$ROUNDS (median), wrk -t2 -c64 -d${WRK_SECONDS}s; $(nproc) cores; $(date -u +%FT%TZ)"
    echo
    echo "| registry | push monolithic (MB/s) | push ${CHUNK_MIB} MiB chunks (MB/s) | pull (MB/s) | manifest GET (req/s) | manifest GET p99 |"
    echo "|---|---:|---:|---:|---:|---:|"
} | tee "$OUT/results.md"

port=$(free_port)
cat >"$WORK/wharf-s3.toml" <<EOF
[storage]
type = "s3"
endpoint = "$S3_ENDPOINT"
region = "garage"
bucket = "wharf-bench"
access_key_id = "$KEY_ID"
secret_access_key = "$SECRET"
EOF
"$WHARF" serve --listen 127.0.0.1:$port --config "$WORK/wharf-s3.toml" >"$WORK/wharf-s3.log" 2>&1 &
PIDS+=($!)
wait_http http://127.0.0.1:$port
bench wharf-s3 http://127.0.0.1:$port
kill "${PIDS[-1]}"

port=$(free_port)
"$WHARF" serve --listen 127.0.0.1:$port --root "$WORK/fs-root" >"$WORK/wharf-fs.log" 2>&1 &
PIDS+=($!)
wait_http http://127.0.0.1:$port
bench wharf-fs http://127.0.0.1:$port
kill "${PIDS[-1]}"

port=$(free_port)
cat >"$WORK/distribution.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  s3:
    regionendpoint: $S3_ENDPOINT
    region: garage
    bucket: dist-bench
    accesskey: $KEY_ID
    secretkey: $SECRET
    forcepathstyle: true
    secure: false
    v4auth: true
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: 127.0.0.1:$port
EOF
# The AWS SDK in distribution refuses a custom CA bundle with its own transport.
env -u AWS_CA_BUNDLE docker-registry serve "$WORK/distribution.yml" >"$WORK/distribution.log" 2>&1 &
PIDS+=($!)
wait_http http://127.0.0.1:$port
bench distribution-s3 http://127.0.0.1:$port

echo "results in $OUT/results.md"
