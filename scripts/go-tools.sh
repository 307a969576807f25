#!/usr/bin/env bash
# Builds the test-only tools that Debian does not package, from the Go
# modules pinned under tools/:
#   tools/go.mod                 containerd 2.x (the newest release line) and crictl (cri-tools)
#   tools/containerd-2.0/go.mod  containerd 2.0 (its CRI plugin pulls images itself;
#                                2.1+ pulls through the transfer service)
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

# The Go toolchain: `go` on PATH, else the usual tarball location.
find_go() {
    local go
    if go="$(command -v go 2>/dev/null)"; then
        echo "$go"
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    else
        fail "no Go toolchain found (neither \`go\` on PATH nor /usr/local/go/bin/go).
The test tools need Go $(required_go) or newer; Debian bookworm's golang-go (1.19) is too old.
hint: install Go $(required_go)+ from the official release tarball into /usr/local/go, or put a
      recent enough \`go\` on PATH, then run scripts/test.sh again"
    fi
}

# The newest `go` directive among the pinned modules.
required_go() {
    sed -n 's/^go \([0-9.]*\)$/\1/p' tools/go.mod tools/*/go.mod | sort -V | tail -n 1
}

check_go_version() {
    local go="$1" have need
    have="$(GOTOOLCHAIN=local "$go" env GOVERSION)"
    have="${have#go}"
    need="$(required_go)"
    if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
        fail "$go is Go $have, but the pinned tool modules need Go $need or newer.
hint: install a newer Go (official release tarball into /usr/local/go) and put it first on PATH"
    fi
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

build_all() {
    local dir="$1" started
    started="$(date +%s)"
    build_containerd tools "$dir/containerd-2" || return
    build_containerd tools/containerd-2.0 "$dir/containerd-2.0" || return
    build_crictl tools "$dir/cri-tools" || return
    log "built in $(($(date +%s) - started)) s"
}

GO="$(find_go)"
check_go_version "$GO"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/wharf-test-tools"
KEY="$(cache_key)"
DEST="$CACHE_ROOT/$KEY"

if [ -x "$DEST/containerd-2/containerd" ] && [ -x "$DEST/containerd-2.0/containerd" ] &&
    [ -x "$DEST/cri-tools/crictl" ]; then
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
