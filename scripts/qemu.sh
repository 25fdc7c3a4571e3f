#!/usr/bin/env bash
# Boots the lde kernel under QEMU with TCG (exact x86 behaviour, no KVM) and exits with the
# guest's exit code, like `lde run`.
usage="usage: scripts/qemu.sh [--mem MIB] [--timeout SECS] [--kernel PATH] [--cmdline WORDS] [--program PATH]...
       [--timer-hz N] [--timer-mode MODE] [--slice TICKS] [--kernel-stats] [-q] [--gdb[=PORT]] [--disk FILE[,ro]]...
       [--cpus N]
       [--probe | PROGRAM...]
--gdb: QEMU's GDB stub on 127.0.0.1:PORT (default 1234), the CPU stopped before the first instruction
--cpus: QEMU's -smp N, and lde.cpus=N on the kernel command line when N > 1 (as lde run --cpus does)
--disk: a raw image as a virtio-blk device (modern virtio-mmio); the machine is then microvm (acpi=off),
        whose virtio-mmio transports QEMU announces on the kernel command line as lde does
(extra QEMU arguments may be given in LDE_QEMU_ARGS, e.g. '-d int -D /tmp/qemu.log')"
set -uo pipefail

mem=128
cpus=1
timeout_secs=""
kernel=""
cmdline=""
quiet=0
probe=0
gdb_port=""
export_args=()
disks=()
while [ $# -gt 0 ]; do
    case "$1" in
        -m|--mem) mem="${2:?$usage}"; shift 2 ;;
        -t|--timeout) timeout_secs="${2:?$usage}"; shift 2 ;;
        --kernel) kernel="${2:?$usage}"; shift 2 ;;
        --cmdline) cmdline="${2?$usage}"; shift 2 ;;
        --program|--timer-hz|--timer-mode|--slice) export_args+=("$1" "${2:?$usage}"); shift 2 ;;
        --kernel-stats) export_args+=("$1"); shift ;;
        --disk) disks+=("${2:?$usage}"); shift 2 ;;
        --cpus) cpus="${2:?$usage}"; shift 2 ;;
        -q|--quiet) quiet=1; shift ;;
        --probe) probe=1; shift ;;
        --gdb) gdb_port=1234; shift ;;
        --gdb=*) gdb_port="${1#--gdb=}"; shift ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -*) echo "qemu.sh: unknown argument '$1'" >&2; echo "$usage" >&2; exit 2 ;;
        *) export_args+=("$1"); shift ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
need_qemu qemu.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The exact kernel and command line `lde run` would boot.
need_lde "$root"
if [ "$probe" = 1 ]; then
    # The same programs `lde probe` runs; the transcript is read by `lde probe --transcript`.
    mapfile -t export_args < <("$lde" probe --programs)
    export_args+=(--kernel-stats) # the findings are read from the kernel's `stats:` lines
    quiet=1
fi
"$lde" export --dir "$work" --cmdline "$cmdline" "${export_args[@]}"
status=$?
[ "$status" = 0 ] || exit "$status"
[ -n "$kernel" ] || kernel="$work/kernel.elf"
[ -r "$kernel" ] || { echo "qemu.sh: cannot read the kernel $kernel" >&2; exit 72; }
# As lde does: lde.cpus only with more than one processor.
kernel_cmdline=$(cat "$work/cmdline")
[ "$cpus" = 1 ] || kernel_cmdline="$kernel_cmdline lde.cpus=$cpus"

# shellcheck disable=SC2054 # the commas belong to QEMU's -device option, not to the array
args=(-accel tcg -machine q35 -cpu max -m "$mem" -display none -monitor none -no-reboot
      -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04
      -kernel "$kernel" -initrd "$work/initrd.cpio" -append "$kernel_cmdline" -smp "$cpus")
if [ "${#disks[@]}" -gt 0 ]; then
    # microvm: virtio-mmio transports, which QEMU announces with virtio_mmio.device= words on
    # the command line (auto-kernel-cmdline); one I/O APIC (ioapic2=off), so their interrupts
    # are inputs of the one the kernel routes.
    # shellcheck disable=SC2054
    args[3]=microvm,acpi=off,pit=off,pic=off,rtc=off,ioapic2=off,auto-kernel-cmdline=on
    args+=(-global virtio-mmio.force-legacy=false)
    for i in "${!disks[@]}"; do
        file=${disks[$i]%,ro}
        ro=""
        [ "$file" = "${disks[$i]}" ] || ro=",readonly=on"
        [ -r "$file" ] || { echo "qemu.sh: cannot read the disk image $file" >&2; exit 72; }
        args+=(-drive "file=$file,format=raw,if=none,id=disk$i$ro" -device "virtio-blk-device,drive=disk$i")
    done
fi
if [ -n "$gdb_port" ]; then
    args+=(-gdb "tcp:127.0.0.1:$gdb_port" -S)
    echo "qemu.sh: gdb: waiting for GDB on 127.0.0.1:$gdb_port (in GDB: target remote 127.0.0.1:$gdb_port)" >&2
fi
# shellcheck disable=SC2206 # word splitting of the extra arguments is intended
args+=(${LDE_QEMU_ARGS:-})
[ "$quiet" = 1 ] || echo "qemu.sh: host: QEMU $("$qemu" --version | head -n1 | awk '{print $4}') with TCG (software emulation; timings mean nothing)" >&2

run_qemu() {
    if [ -n "$timeout_secs" ]; then
        timeout --foreground "$timeout_secs" "$qemu" "${args[@]}"
    else
        "$qemu" "${args[@]}"
    fi
}
# The serial output is kept for the checks below and shown as it comes (not for --probe, whose
# table is made from it).
if [ "$probe" = 1 ]; then
    run_qemu >"$work/serial"
    status=$?
else
    run_qemu | tee "$work/serial"
    status=${PIPESTATUS[0]}
fi
if [ "$probe" = 1 ]; then
    "$lde" probe --transcript "$work/serial" --host "QEMU $("$qemu" --version | head -n1 | awk '{print $4}') with TCG (x86 as the manuals say)"
    exit $?
fi

# isa-debug-exit makes QEMU exit with (code << 1) | 1. QEMU's own failures exit 1 too, which is
# also code 0: a kernel that wrote code 0 printed its banner first, so no banner means QEMU failed.
if [ "$status" = 124 ]; then
    echo "qemu.sh: timeout: the guest was still running after $timeout_secs s; stopped it" >&2
    exit 124
elif [ "$status" = 0 ]; then
    echo "qemu.sh: guest crashed: QEMU reset the machine without an exit code (triple fault)" >&2
    exit 70
elif [ "$status" = 1 ] && ! grep -q '^lde kernel ' "$work/serial"; then
    echo "qemu.sh: QEMU failed before the kernel started" >&2
    exit 74
elif [ $((status % 2)) = 1 ]; then
    code=$((status >> 1))
    [ "$quiet" = 1 ] || echo "qemu.sh: exit code $code" >&2
    exit "$code"
fi
echo "qemu.sh: QEMU exited with status $status" >&2
exit 74
