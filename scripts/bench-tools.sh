#!/usr/bin/env bash
# scripts/bench-tools.sh [--print-dir]
#
# Builds the peers the benchmarks compare wharf with from their Go modules,
# at the versions pinned in bench/tools/go.mod (go.sum checks every module):
#   registry   CNCF distribution v3 (github.com/distribution/distribution/v3/cmd/registry)
#   crane      github.com/google/go-containerregistry/cmd/crane
#   regsync    github.com/regclient/regclient/cmd/regsync
# into a cache folder keyed by a hash of the module files and the platform
# (the way scripts/go-tools.sh caches the test tools), so a build happens
# once per pin and a changed pin never reuses an old binary. Each command is
# built on its own: one that fails to build is reported and the others are
# still built. Prints the folder on stdout.
#
#   --print-dir   print the folder if a build already exists, build nothing
#                 (exit 1 when there is none)
#
# Environment: GO (default: go on PATH, else /usr/local/go/bin/go),
# WHARF_BENCH_TOOLS_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/wharf-bench-tools).
# Needs Go 1.26 or newer and the Go module proxy (or a filled module cache).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=$ROOT/bench/tools
COMMANDS=(
  github.com/distribution/distribution/v3/cmd/registry
  github.com/google/go-containerregistry/cmd/crane
  github.com/regclient/regclient/cmd/regsync
)

fail() {
  printf 'bench-tools: error: %s\n' "$1" >&2
  [[ -z ${2:-} ]] || printf 'hint: %s\n' "$2" >&2
  exit 1
}

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
platform=$("$GO" env GOOS 2>/dev/null)/$("$GO" env GOARCH 2>/dev/null) || platform=unknown
key=$({ cat "$MODULE/go.mod" "$MODULE/go.sum" "$MODULE/tools.go"; echo "platform: $platform"; } | sha256sum | cut -c1-16)
cache=${WHARF_BENCH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf-bench-tools}
dir=$cache/$key/bin

if [[ ${1:-} == --print-dir ]]; then
  [[ -n $(ls -A "$dir" 2>/dev/null) ]] || exit 1
  echo "$dir"
  exit 0
fi
[[ $# == 0 ]] || fail "usage: scripts/bench-tools.sh [--print-dir]"

[[ -x $GO ]] || fail "no Go toolchain found" "install Go 1.26 or newer, or set GO to the go binary"

mkdir -p "$dir"
built=() failed=()
for pkg in "${COMMANDS[@]}"; do
  name=${pkg##*/}
  if [[ -x $dir/$name ]]; then
    built+=("$name")
    continue
  fi
  printf 'bench-tools: building %s\n' "$pkg" >&2
  # Into a temporary name first: an interrupted build never looks finished.
  if (cd "$MODULE" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly nice -n 10 "$GO" build -trimpath -buildvcs=false \
    -o "$dir/.$name.tmp" "$pkg") >&2; then
    mv "$dir/.$name.tmp" "$dir/$name"
    built+=("$name")
  else
    rm -f "$dir/.$name.tmp"
    failed+=("$name")
  fi
done
# Builds for other pins are dead weight (tens of MB each).
for old in "$cache"/*; do
  if [[ -d $old && $old != "$cache/$key" ]]; then rm -rf "$old"; fi
done
printf 'bench-tools: built: %s%s\n' "${built[*]:-none}" "${failed[*]:+; failed: ${failed[*]}}" >&2
echo "$dir"
[[ ${#failed[@]} == 0 ]]
