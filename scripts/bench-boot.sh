#!/usr/bin/env bash
# Wall time and peak RSS of a whole run: `lde run -q hello` against QEMU (microvm, KVM) booting
# the same image (`lde export`: the kernel lde embeds, the same initrd and command line), in
# pairs, the order alternating from round to round; then the same for a boot-only run (the
# kernel panics right after its banner: `lde.test=panic`, nothing to run). Prints the medians,
# the ratio lde/QEMU and the peak RSS of each; then `lde run -q --none` and `lde run -q PROGRAM`
# against the floor (`lde bench --floor-once`: a process that builds a bare VM of lde's size and
# irqchip on the same crates, runs 3 instructions to the shutdown port and exits), as ratios.
usage="usage: scripts/bench-boot.sh [--rounds N] [PROGRAM]    (default: 21 rounds of hello)
(the lde binary: \$LDE, else target/release/lde, built if missing)"
set -euo pipefail

rounds=21
program=hello
while [ $# -gt 0 ]; do
    case "$1" in
        -n|--rounds) rounds="${2:?$usage}"; shift 2 ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -*) echo "bench-boot.sh: unknown argument '$1'" >&2; echo "$usage" >&2; exit 2 ;;
        *) program="$1"; shift ;;
    esac
done
case "$rounds" in
    ''|*[!0-9]*|0) echo "bench-boot.sh: --rounds takes a whole number from 1 up" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
need_qemu bench-boot.sh
[ -x /usr/bin/time ] || { echo "bench-boot.sh: /usr/bin/time not found: install it (apt-get install time)" >&2; exit 71; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
need_lde "$root"
"$lde" export --dir "$work/run" "$program"
"$lde" export --dir "$work/panic" --none --cmdline lde.test=panic

# QEMU's microvm with KVM, as docs/platform.md found it to boot the lde kernel (plain
# `-cpu host` aborts on MSR 0x10a); 128 MiB, as `lde run`.
qemu_args() { # qemu_args DIR
    # shellcheck disable=SC2054 # the commas belong to QEMU's options
    q=(-M microvm,pit=off,pic=off,rtc=off -accel kvm -cpu host,-arch-capabilities -m 128
       -nodefaults -no-user-config -display none -no-reboot -serial stdio
       -device isa-debug-exit,iobase=0xf4,iosize=0x04
       -kernel "$1/kernel.elf" -initrd "$1/initrd.cpio" -append "$(cat "$1/cmdline")")
}

# timed NAME EXPECTED_STATUS COMMAND...: runs it once; appends its wall time and peak RSS
# (KiB) to $work/NAME.us (µs) and $work/NAME.kib; stops the script if it did not end as expected.
timed() {
    local name=$1 expected=$2 t0 t1 status
    shift 2
    t0=$(date +%s%N)
    set +e
    /usr/bin/time -f %M -o "$work/rss" "$@" >"$work/out" 2>"$work/err"
    status=$?
    set -e
    t1=$(date +%s%N)
    if [ "$status" != "$expected" ]; then
        echo "bench-boot.sh: $name exited $status, not $expected; its output:" >&2
        tail -n 5 "$work/out" "$work/err" >&2
        exit 1
    fi
    echo "$(( (t1 - t0) / 1000 ))" >>"$work/$name.us"
    tail -n 1 "$work/rss" >>"$work/$name.kib"
}

median() { # median FILE: the median of its numbers (the lower middle one for an even count)
    sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

host=$("$lde" run --none 2>&1 >/dev/null | sed -n 's/^lde: host: //p')
echo "bench-boot.sh: $rounds rounds, each pair in alternating order; host: $host;" \
    "$("$qemu" --version | head -n 1)"

# isa-debug-exit makes QEMU exit with (code << 1) | 1: code 0 (every process succeeded) is 1,
# code 3 (kernel panic) is 7.
for round in $(seq 1 "$rounds"); do
    qemu_args "$work/run"
    run_q=("${q[@]}")
    qemu_args "$work/panic"
    panic_q=("${q[@]}")
    if [ $((round % 2)) = 1 ]; then
        timed lde-run 0 "$lde" run -q "$program"
        timed qemu-run 1 "$qemu" "${run_q[@]}"
        timed lde-panic 3 "$lde" run -q --none --cmdline lde.test=panic
        timed qemu-panic 7 "$qemu" "${panic_q[@]}"
        timed floor 0 "$lde" bench --floor-once
        timed lde-none 0 "$lde" run -q --none
    else
        timed qemu-run 1 "$qemu" "${run_q[@]}"
        timed lde-run 0 "$lde" run -q "$program"
        timed qemu-panic 7 "$qemu" "${panic_q[@]}"
        timed lde-panic 3 "$lde" run -q --none --cmdline lde.test=panic
        timed lde-none 0 "$lde" run -q --none
        timed floor 0 "$lde" bench --floor-once
    fi
done

printf '%-26s %12s %12s %12s %16s %16s\n' "run" "lde ms" "QEMU ms" "lde/QEMU" "lde peak RSS" "QEMU peak RSS"
for pair in run panic; do
    lde_us=$(median "$work/lde-$pair.us")
    qemu_us=$(median "$work/qemu-$pair.us")
    label="$program (whole run)"
    [ "$pair" = panic ] && label="boot only (lde.test=panic)"
    awk -v l="$label" -v a="$lde_us" -v b="$qemu_us" -v ra="$(median "$work/lde-$pair.kib")" \
        -v rb="$(median "$work/qemu-$pair.kib")" \
        'BEGIN { printf "%-26s %12.1f %12.1f %12.3f %12.1f MiB %12.1f MiB\n", l, a / 1000, b / 1000, a / b, ra / 1024, rb / 1024 }'
done
echo "(medians of $rounds runs each: wall time of the whole process, peak RSS as /usr/bin/time reports it)"

floor_us=$(median "$work/floor.us")
printf '\n%-26s %12s %12s\n' "against the floor" "ms" "x floor"
awk -v f="$floor_us" 'BEGIN { printf "%-26s %12.1f %12.2f\n", "floor (bare VM, 3 insns)", f / 1000, 1 }'
for pair in none run; do
    label="lde run -q --none"
    [ "$pair" = run ] && label="lde run -q $program"
    awk -v l="$label" -v a="$(median "$work/lde-$pair.us")" -v f="$floor_us" \
        'BEGIN { printf "%-26s %12.1f %12.2f\n", l, a / 1000, a / f }'
done
