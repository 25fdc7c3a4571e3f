# shellcheck shell=bash
# Shared by the scripts that boot lde's kernel under QEMU (sourced, not run).

# need_qemu SCRIPT: sets $qemu to qemu-system-x86_64, or exits 71 saying how to install it.
need_qemu() {
    # shellcheck disable=SC2034 # set for the script that sources this file
    qemu=$(command -v qemu-system-x86_64) || {
        echo "$1: qemu-system-x86_64 not found: install it (apt-get install qemu-system-x86)" >&2
        exit 71
    }
}

# need_lde ROOT: sets $lde to $LDE, or else to ROOT's release build of lde (built if stale).
need_lde() {
    lde="${LDE:-}"
    if [ -z "$lde" ]; then
        (cd "$1" && cargo build --release --quiet --bin lde) || exit 74
        lde="${CARGO_TARGET_DIR:-$1/target}/release/lde"
    fi
}
