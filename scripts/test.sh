#!/usr/bin/env bash
# The project's one test command.
#
# Installs the Debian packages the end-to-end tests drive (containerd,
# skopeo, podman, ...) when they are missing, builds the test tools Debian
# lacks (containerd 2.x and crictl, from the Go modules pinned under tools/,
# cached between runs), then runs every unit, conformance and end-to-end
# test of the workspace and exits with the status of `cargo test`. Run it
# as root or as a user with sudo: the end-to-end tests start containerd and
# create network namespaces.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The S3-compatible server the object-storage tests start (a separate
# process; never linked). Keep in step with GARAGE_VERSION in
# crates/wharf-storage-s3/src/garage.rs.
GARAGE_VERSION=2.5.0

# Debian packages the end-to-end tests need.
PACKAGES=(containerd skopeo podman docker-registry iproute2 util-linux curl jq apache2-utils openssl procps python3 time)

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fail "this needs root: run scripts/test.sh as root or install sudo"
    fi
}

is_installed() {
    # Not `dpkg -s | grep -q`: grep exiting early makes dpkg fail under pipefail.
    local status
    status="$(dpkg -s "$1" 2>/dev/null)" || return 1
    grep -q '^Status: install ok installed$' <<<"$status"
}

install_packages() {
    step "Checking test dependencies: ${PACKAGES[*]}"
    if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        fail "no dpkg/apt-get here; install these (Debian package names) by hand: ${PACKAGES[*]}"
    fi
    local missing=() package
    for package in "${PACKAGES[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all installed"
        return
    fi
    step "Installing missing packages: ${missing[*]}"
    # apt and dpkg are chatty; keep their output in a log shown only on failure.
    local log
    log="$(mktemp)"
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        fail "installing ${missing[*]} failed"
    fi
    rm -f "$log"
    echo "installed"
}

# containerd 2.0, the newest containerd 2.x, crictl and the benchmarks' Go
# peers: scripts/go-tools.sh builds them once per pinned version (needs Go;
# see there) and prints the WHARF_* variables that tell the tests where they are.
install_go_tools() {
    step "Checking the Go-built test tools (containerd 2.x, crictl, benchmark peers)"
    local lines line
    lines="$(scripts/go-tools.sh)" || fail "building the Go test tools failed (see above)"
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        echo "$line"
        export "${line?}"
    done <<<"$lines"
}

find_cargo() {
    # rustup installs into ~/.cargo/bin, which non-login shells may not have on PATH.
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        export PATH
    fi
    command -v cargo >/dev/null 2>&1 || fail "cargo not found. Install a Rust toolchain (1.85 or newer), e.g.:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
or, on Debian trixie or newer: apt-get install cargo"
}

install_garage() {
    step "Checking for garage (S3 server for the object-storage tests)"
    if [ -n "${WHARF_TEST_GARAGE:-}" ] && [ -x "$WHARF_TEST_GARAGE" ]; then
        echo "using $WHARF_TEST_GARAGE"
        return
    fi
    if command -v garage >/dev/null 2>&1; then
        echo "found $(command -v garage)"
        return
    fi
    step "Installing garage $GARAGE_VERSION (cargo install; this takes a while)"
    cargo install garage --locked --version "$GARAGE_VERSION" \
        || fail "installing garage failed; install it by hand or set WHARF_TEST_GARAGE to a garage binary"
}

run_tests() {
    local cargo_test=(cargo test --workspace --locked)
    if [ "$(id -u)" -eq 0 ]; then
        step "Running ${cargo_test[*]}"
        # Explicit returns: `run_tests || status=$?` turns off `set -e` in here.
        "${cargo_test[@]}" || return
        run_s3_conformance
        return
    fi
    # Build as the invoking user so target/ stays theirs; only running needs root.
    step "Building the tests"
    "${cargo_test[@]}" --no-run || return
    step "Running ${cargo_test[*]} as root (containerd and network namespaces need it)"
    as_root env "PATH=$PATH" \
        "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
        "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" \
        ${CARGO_TARGET_DIR:+"CARGO_TARGET_DIR=$CARGO_TARGET_DIR"} \
        "WHARF_TEST_CONTAINERD2_BIN_DIR=$WHARF_TEST_CONTAINERD2_BIN_DIR" \
        "WHARF_TEST_CONTAINERD2_0_BIN_DIR=$WHARF_TEST_CONTAINERD2_0_BIN_DIR" \
        "WHARF_TEST_CRICTL=$WHARF_TEST_CRICTL" \
        "WHARF_BENCH_TOOLS_BIN=$WHARF_BENCH_TOOLS_BIN" \
        "${cargo_test[@]}" || return
    run_s3_conformance
}

# The registry conformance suites once more, on S3 storage (Garage).
# Selected from the whole workspace, not with `-p wharf-registry`: features
# are resolved for the packages selected, and one package alone resolves
# them differently (about 40 crates built a second time). With --workspace
# the suites are the binaries the run above built, and nothing is compiled.
run_s3_conformance() {
    local suites=() file
    for file in crates/wharf-registry/tests/conformance_*.rs; do
        suites+=(--test "$(basename "$file" .rs)")
    done
    step "Running the conformance suites against S3 storage"
    WHARF_TEST_STORAGE=s3 cargo test --workspace --locked "${suites[@]}"
}

install_packages
install_go_tools
find_cargo
install_garage
status=0
run_tests || status=$?
if [ "$status" -eq 0 ]; then
    step "All tests passed"
else
    step "Tests failed (exit status $status)"
fi
exit "$status"
