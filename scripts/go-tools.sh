#!/usr/bin/env bash
# Builds the test-only tools that Debian does not package, from the Go
# modules pinned under tools/:
#   tools/go.mod                 containerd 2.x (the newest release line) and crictl (cri-tools)
#   tools/containerd-2.0/go.mod  containerd 2.0 (its CRI plugin pulls images itself;
#                                2.1+ pulls through the transfer service)
#   tools/bench/go.mod           the benchmarks' peers: distribution v3 (`registry`),
#                                crane (go-containerregistry), regsync (regclient)
#
# The binaries go into a cache directory keyed by a hash of those module
# files and the build settings, so a second run builds nothing:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-tools/<key>/
#
# On success it prints, on stdout, one NAME=VALUE line per tool, the
# variables the end-to-end tests read:
#   WHARF_TEST_CONTAINERD2_BIN_DIR    directory with containerd and ctr of the newest 2.x
#   WHARF_TEST_CONTAINERD2_0_BIN_DIR  directory with containerd and ctr of 2.0
#   WHARF_TEST_CRICTL                 the crictl binary
#   WHARF_BENCH_TOOLS_BIN             directory with registry, crane and regsync
#                                     (scripts/bench-wan.sh, scripts/bench-registries.sh,
#                                     and the WAN benchmark's smoke test)
# Progress and errors go to stderr.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Storage drivers the tests never use and that need C libraries or kernel
# headers the machine may lack; the tests unpack with the native snapshotter.
BUILD_TAGS="no_btrfs no_devmapper no_zfs no_aufs"
CONTAINERD_MODULE=github.com/containerd/containerd/v2
CRICTL_MODULE=sigs.k8s.io/cri-tools

log() { printf '%s\n' "$*" >&2; }
fail() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

# The Go toolchain: the first of `go` on PATH and /usr/local/go/bin/go (where
# the official tarball goes) that is new enough for the pinned modules.
# Debian's golang-go (1.19 on bookworm) is not, so it is never installed here.
find_go() {
    local need candidate version found=()
    need="$(required_go)"
    for candidate in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        version="$(GOTOOLCHAIN=local "$candidate" env GOVERSION 2>/dev/null)" || continue
        version="${version#go}"
        if version_at_least "$version" "$need"; then
            echo "$candidate"
            return
        fi
        found+=("$candidate is Go $version")
    done
    fail "no Go $need or newer found (${found[*]:-neither \`go\` on PATH nor /usr/local/go/bin/go exists}).
The test tools (containerd 2.x, crictl) are built from Go modules that need Go $need;
Debian bookworm's golang-go (1.19) is too old.
hint: install Go $need+ from the official release tarball into /usr/local/go (or put a recent
      enough \`go\` first on PATH), then run scripts/test.sh again"
}

# The newest `go` directive among the pinned modules.
required_go() {
    sed -n 's/^go \([0-9.]*\)$/\1/p' tools/go.mod tools/*/go.mod | sort -V | tail -n 1
}

# Whether version $1 is $2 or newer.
version_at_least() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# A hash of everything that decides what gets built.
cache_key() {
    {
        find tools -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 |
            sort -z | xargs -0 sha256sum
        echo "tags: $BUILD_TAGS"
        echo "platform: $("$GO" env GOOS)/$("$GO" env GOARCH)"
    } | sha256sum | cut -c1-16
}

module_version() {
    (cd "$1" && GOFLAGS=-mod=readonly "$GO" list -m -f '{{.Version}}' "$2")
}

# go build with the pinned module graph, the storage-driver tags, and
# version strings like a release build's, so `containerd --version` and the
# CRI Version call report the release (e.g. v2.4.2), as on a real node.
build() {
    local module_dir="$1" out="$2" ldflags="$3"
    shift 3
    (cd "$module_dir" &&
        GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$GO" build -trimpath \
            -tags "$BUILD_TAGS" -ldflags "$ldflags" -o "$out/" "$@")
}

build_containerd() {
    local module_dir="$1" out="$2" version
    version="$(module_version "$module_dir" "$CONTAINERD_MODULE")" || return
    log "building containerd $version (containerd, ctr)"
    mkdir -p "$out" || return
    build "$module_dir" "$out" "-X $CONTAINERD_MODULE/version.Version=$version" \
        "$CONTAINERD_MODULE/cmd/containerd" "$CONTAINERD_MODULE/cmd/ctr"
}

build_crictl() {
    local module_dir="$1" out="$2" version
    version="$(module_version "$module_dir" "$CRICTL_MODULE")" || return
    log "building crictl $version"
    mkdir -p "$out" || return
    build "$module_dir" "$out" "-X $CRICTL_MODULE/pkg/version.Version=$version" \
        "$CRICTL_MODULE/cmd/crictl"
}

# The benchmark peers, as their own release builds are made: no build tags.
build_bench_peers() {
    local out="$1"
    log "building the benchmark peers (distribution v3, crane, regsync)"
    mkdir -p "$out" || return
    (cd tools/bench &&
        GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$GO" build -trimpath -buildvcs=false -o "$out/" \
            github.com/distribution/distribution/v3/cmd/registry \
            github.com/google/go-containerregistry/cmd/crane \
            github.com/regclient/regclient/cmd/regsync)
}

build_all() {
    local dir="$1" started
    started="$(date +%s)"
    build_containerd tools "$dir/containerd-2" || return
    build_containerd tools/containerd-2.0 "$dir/containerd-2.0" || return
    build_crictl tools "$dir/cri-tools" || return
    build_bench_peers "$dir/bench" || return
    log "built in $(($(date +%s) - started)) s"
}

GO="$(find_go)"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-tools"
KEY="$(cache_key)"
DEST="$CACHE_ROOT/$KEY"

if [ -x "$DEST/containerd-2/containerd" ] && [ -x "$DEST/containerd-2.0/containerd" ] &&
    [ -x "$DEST/cri-tools/crictl" ] && [ -x "$DEST/bench/regsync" ]; then
    log "test tools cached in $DEST"
else
    log "building the test tools with $("$GO" env GOVERSION) into $DEST (takes minutes the first time)"
    mkdir -p "$CACHE_ROOT"
    # Build beside the final name and rename, so an interrupted build is never taken for a cached one.
    staging="$(mktemp -d "$CACHE_ROOT/.building-$KEY.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    build_all "$staging" || fail "building the test tools failed (see above)
hint: the module proxy must be reachable for the first build; GOPROXY is $("$GO" env GOPROXY)"
    rm -rf "$DEST"
    mv "$staging" "$DEST"
    trap - EXIT
    # Builds for other pins are dead weight (hundreds of MB each).
    for old in "$CACHE_ROOT"/*; do
        if [ -d "$old" ] && [ "$old" != "$DEST" ]; then
            rm -rf "$old"
        fi
    done
fi

echo "WHARF_TEST_CONTAINERD2_BIN_DIR=$DEST/containerd-2"
echo "WHARF_TEST_CONTAINERD2_0_BIN_DIR=$DEST/containerd-2.0"
echo "WHARF_TEST_CRICTL=$DEST/cri-tools/crictl"
echo "WHARF_BENCH_TOOLS_BIN=$DEST/bench"
