#!/usr/bin/env bash
# Starts the lde guest stopped under a GDB stub (lde's own, or QEMU's with --qemu) and GDB on
# it with the kernel's and the first program's debug information and lde's GDB commands
# (scripts/lde.gdb: lde-trapframe, lde-pid).
usage="usage: scripts/gdb.sh [--qemu] [--port PORT] [--gdb-args 'ARGS'] [lde run options] [PROGRAM]...
  --qemu      debug under QEMU (scripts/qemu.sh --gdb) instead of lde run --gdb
  --port      the TCP port the stub listens on (default 1234)
  --gdb-args  extra GDB arguments, e.g. '-batch -x script.gdb'"
set -euo pipefail

qemu=0
port=1234
gdb_args=""
run_args=()
programs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --qemu) qemu=1; shift ;;
        --port) port="${2:?$usage}"; shift 2 ;;
        --gdb-args) gdb_args="${2?$usage}"; shift 2 ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -m|--mem|-t|--timeout|--kernel|--cmdline|--program|--timer-hz|--timer-mode|--slice)
            run_args+=("$1" "${2:?$usage}"); shift 2 ;;
        -*) run_args+=("$1"); shift ;;
        *) programs+=("$1"); shift ;;
    esac
done
command -v gdb >/dev/null || { echo "gdb.sh: gdb not found: install it (apt-get install gdb)" >&2; exit 71; }
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
stub=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { [ -z "$stub" ] || kill "$stub" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

(cd "$root" && cargo build --release --quiet --bin lde)
lde="${CARGO_TARGET_DIR:-$root/target}/release/lde"
"$lde" export --dir "$work" "${programs[@]}"
if [ "$qemu" = 1 ]; then
    LDE="$lde" "$root/scripts/qemu.sh" --gdb="$port" "${run_args[@]}" "${programs[@]}" &
else
    "$lde" run --gdb="127.0.0.1:$port" "${run_args[@]}" "${programs[@]}" &
fi
stub=$!
# The first program's symbols (all programs are linked at the same address).
first="${programs[0]:-hello}"
symbols=()
[ -r "$work/programs/${first%% *}.debug" ] && symbols=(-ex "add-symbol-file $work/programs/${first%% *}.debug")
# shellcheck disable=SC2086 # word splitting of the extra GDB arguments is intended
gdb -q -x "$root/scripts/lde.gdb" "${symbols[@]}" -ex "set tcp connect-timeout 30" \
    -ex "target remote 127.0.0.1:$port" $gdb_args "$work/kernel.debug"
status=0
wait "$stub" || status=$?
stub=""
exit "$status"
