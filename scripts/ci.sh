#!/usr/bin/env bash
# usage: scripts/ci.sh
# Installs what the tests need (the x86_64-unknown-none Rust target, QEMU, binutils, GDB), checks
# formatting and lints of the host and guest crates, and runs every test. Set LDE_REQUIRE_KVM=1
# and LDE_REQUIRE_QEMU=1 to make tests fail, not skip, when KVM or QEMU is missing; the attack,
# isolation and process tests run twice, the second time on two processors. Then runs the
# tests of tests/nested.txt on architectural KVM inside the nested host (scripts/nested.sh);
# LDE_REQUIRE_NESTED=1 makes a nested host that cannot be had a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "ci.sh: need root to run: $*" >&2; return 1; fi
}

apt_updated=0
need_package() { # need_package COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    echo "ci.sh: installing $2 (for $1)"
    if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

rustup target list --installed | grep -qx x86_64-unknown-none || rustup target add x86_64-unknown-none
need_package qemu-system-x86_64 qemu-system-x86
need_package objdump binutils
need_package setpriv util-linux
need_package shellcheck shellcheck
need_package gdb gdb
need_package cpio cpio

echo "ci.sh: shell scripts"
shellcheck scripts/*.sh .ci/run

echo "ci.sh: format"
cargo fmt --all --check
(cd guest/kernel && cargo fmt --check)
(cd guest/user && cargo fmt --check)

echo "ci.sh: lints"
cargo clippy --locked --all-targets -- -D warnings
(cd guest/kernel && cargo clippy --locked --release -- -D warnings)
(cd guest/user && cargo clippy --locked --release --bins -- -D warnings)

echo "ci.sh: tests"
cargo test --locked

# The suites that attack the kernel, once more with every run on two processors (tests'
# Host::run adds --cpus 2): the big kernel lock, per-CPU data and shootdowns under fire. (The
# one-processor suites, timesharing's and the exact trap lists of protection's, assert what only
# one processor does.)
echo "ci.sh: the attack, isolation and process tests on two processors"
LDE_TEST_CPUS=2 cargo test --locked --test attack --test isolation --test processes

echo "ci.sh: tests on the nested host (architectural KVM: nested SVM under QEMU TCG)"
status=0
scripts/nested.sh --time-limit 600 --tests tests/nested.txt || status=$?
if [ "$status" = 83 ]; then
    # The nested Linux itself stopped (QEMU TCG or its kernel, below lde; seen about once in
    # twenty boots): said here, and the nested tests run once more in a fresh boot.
    echo "ci.sh: the nested Linux stopped under the tests (scripts/nested.sh exit 83); running them once more"
    status=0
    scripts/nested.sh --time-limit 600 --tests tests/nested.txt || status=$?
fi
if [ "$status" = 80 ] && [ "${LDE_REQUIRE_NESTED:-}" != 1 ]; then
    echo "SKIP nested host: scripts/nested.sh could not prepare it (exit 80)"
elif [ "$status" != 0 ]; then
    echo "ci.sh: the tests on the nested host failed (scripts/nested.sh exit $status)" >&2
    exit "$status"
fi
