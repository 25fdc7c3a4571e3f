#!/usr/bin/env bash
# Runs lde (or the project's own test binaries) on architectural KVM without the hardware: QEMU
# with TCG and `-cpu max` emulates an AMD CPU with SVM and nested paging, a Debian Linux boots in
# it, loads kvm_amd, and lde runs inside on that /dev/kvm (the kind of KVM users have: nested, as
# on CI runners). One boot serves all the work given.
usage="usage: scripts/nested.sh [OPTIONS] -- COMMAND [ARG]...   run one command (e.g. lde probe) inside
       scripts/nested.sh [OPTIONS] --script FILE           run a busybox sh script inside (lde and gdb there)
       scripts/nested.sh [OPTIONS] --tests FILE            run the integration tests FILE lists inside
options:
  --time-limit SECS   outer limit on the whole boot and work (default 600)
  --mem MIB           memory of the nested host (default 2048)
  --cache DIR         where the Debian packages are kept (default \$LDE_NESTED_CACHE or ~/.cache/lde/nested)
  --verbose           also print the nested Linux's console (boot messages, heartbeats)
COMMAND's 'lde' is the lde under test (\$LDE, or this checkout's release build). FILE of --tests
has a line per test target: NAME [libtest ARGS...] ('#' starts a comment); the tests run with
LDE_HOST=nested, which makes their host kind Nested.
exit codes: the work's own (lde's, the script's, or 1 if a test failed); 80 the nested host cannot
be prepared (no QEMU, no apt, a package or tool missing); 81 it did not come up (Linux did not
boot, or kvm_amd did not give a /dev/kvm); 82 the time limit expired (the last lines say which
layer was alive last); 83 the nested Linux itself stopped (no heartbeat for 120 s: QEMU TCG or
its kernel hung, below lde); 2 usage error"
# The whole script is one block, read before any of it runs: editing or checking out this file
# while a run goes on cannot change that run.
{
set -uo pipefail

time_limit=600
mem=2048
cache="${LDE_NESTED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lde/nested}"
verbose=0
mode=""
job_file=""
command_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --time-limit) time_limit="${2:?$usage}"; shift 2 ;;
        --mem) mem="${2:?$usage}"; shift 2 ;;
        --cache) cache="${2:?$usage}"; shift 2 ;;
        --verbose) verbose=1; shift ;;
        --script) mode=script; job_file="${2:?$usage}"; shift 2 ;;
        --tests) mode=tests; job_file="${2:?$usage}"; shift 2 ;;
        --) mode="command"; shift; command_args=("$@"); break ;;
        -h|--help) echo "$usage"; exit 0 ;;
        *) echo "nested.sh: unknown argument '$1'" >&2; echo "$usage" >&2; exit 2 ;;
    esac
done
if [ -z "$mode" ] || { [ "$mode" = command ] && [ ${#command_args[@]} = 0 ]; }; then
    echo "nested.sh: nothing to run" >&2; echo "$usage" >&2; exit 2
fi
case "$time_limit$mem" in *[!0-9]*) echo "nested.sh: --time-limit and --mem take whole numbers" >&2; exit 2 ;; esac
if [ -n "$job_file" ] && [ ! -r "$job_file" ]; then
    echo "nested.sh: cannot read $job_file" >&2; exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
unavailable() { echo "nested.sh: $*" >&2; exit 80; }
command -v qemu-system-x86_64 >/dev/null ||
    unavailable "qemu-system-x86_64 not found: install it (apt-get install qemu-system-x86)"
for tool in cpio strip; do
    command -v "$tool" >/dev/null || unavailable "$tool not found: install it (apt-get install ${tool/strip/binutils})"
done

# --- The Debian packages, fetched once and kept in $cache ------------------------------------
# A Linux with kvm_amd as modules (the cloud flavour boots fast and needs no initramfs of its
# own), busybox for the userland, gdb-minimal for the GDB tests (gdb without Python).
# The newest cloud kernel package in apt's lists (empty if the lists have none).
newest_image() {
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -n 1
}
fetch_packages() {
    command -v apt-get >/dev/null || unavailable "apt-get not found: the nested host is built from Debian packages"
    local image
    image=$(newest_image)
    if [ -z "$image" ]; then
        apt-get update -qq >&2 || unavailable "apt-get update failed"
        image=$(newest_image)
    fi
    [ -n "$image" ] || unavailable "no linux-image-6.1.0-*-cloud-amd64-unsigned package in apt's lists"
    echo "nested.sh: fetching $image, busybox-static, gdb-minimal into $cache (once)" >&2
    local debs="$cache/debs" tree="$cache/tree"
    rm -rf "$debs" "$tree"
    mkdir -p "$debs" "$tree" || unavailable "cannot write $cache"
    (cd "$debs" && apt-get download -q "$image" busybox-static gdb-minimal >/dev/null 2>"$debs/apt.log") ||
        unavailable "apt-get download failed: $(tail -n 1 "$debs/apt.log")"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$tree" || unavailable "cannot unpack $deb"; done
    local kdir vmlinuz
    kdir=$(find "$tree/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    vmlinuz=$(find "$tree/boot" -name 'vmlinuz-*' | head -n 1)
    if [ -z "$kdir" ] || [ -z "$vmlinuz" ]; then unavailable "$image holds no kernel or modules"; fi
    cp "$vmlinuz" "$cache/vmlinuz" || unavailable "cannot write $cache"
    for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do
        cp "$kdir/kernel/$m.ko" "$cache/" || unavailable "$image has no $m.ko"
    done
    cp "$tree/bin/busybox" "$cache/busybox" || unavailable "busybox-static holds no busybox"
    cp "$tree/usr/bin/gdb" "$cache/gdb" || unavailable "gdb-minimal holds no gdb"
    echo "$image" >"$cache/ready"
    rm -rf "$debs" "$tree"
}
mkdir -p "$cache" || unavailable "cannot create $cache"
exec 9>"$cache/.lock"
flock 9
[ -s "$cache/ready" ] || fetch_packages
flock -u 9

work=$(mktemp -d)
qemu_pid=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- The initramfs: busybox, the modules, the binaries and every library they load ------------
tree="$work/root"
mkdir -p "$tree"/{bin,usr/bin,lib/modules,proc,sys,dev,tmp,etc,root}
cp "$cache/busybox" "$tree/bin/busybox"
cp "$cache"/*.ko "$tree/lib/modules/"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$tree/etc/hosts"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tree/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$tree/etc/group"
binaries=()

# add_binary SOURCE DEST: a stripped copy of an ELF file at DEST inside, its libraries with it.
add_binary() {
    mkdir -p "$tree$(dirname "$2")"
    strip --strip-debug -o "$tree$2" "$1" 2>/dev/null || cp "$1" "$tree$2" || unavailable "cannot copy $1"
    binaries+=("$1")
}
add_libraries() {
    local lib missing
    missing=$(ldd "${binaries[@]}" 2>/dev/null | grep 'not found' | sort -u)
    [ -z "$missing" ] || unavailable "libraries missing on this machine: $missing"
    for lib in $(ldd "${binaries[@]}" 2>/dev/null | grep -v ':$' | grep -o '/[^ ]*' | sort -u); do
        mkdir -p "$tree$(dirname "$lib")"
        cp -L "$lib" "$tree$lib"
    done
}

job="$tree/job.sh"
case "$mode" in
    command)
        need_lde "$root"
        add_binary "$lde" /usr/bin/lde
        { echo '#!/bin/sh'; printf '%q ' "${command_args[@]}"; echo; } >"$job"
        ;;
    script)
        need_lde "$root"
        add_binary "$lde" /usr/bin/lde
        add_binary "$cache/gdb" /usr/bin/gdb
        cp "$job_file" "$job"
        ;;
    tests)
        # The test binaries carry absolute paths of this checkout (the lde they run, the schema,
        # scripts/lde.gdb): the same paths exist inside.
        names=$(sed -e 's/#.*//' "$job_file" | awk 'NF {print $1}' | sort -u)
        [ -n "$names" ] || { echo "nested.sh: $job_file names no test" >&2; exit 2; }
        target_args=()
        for n in $names; do target_args+=(--test "$n"); done
        artifacts=$(cd "$root" && cargo test --locked --no-run --message-format=json "${target_args[@]}" 2>"$work/build.log") ||
            { cat "$work/build.log" >&2; echo "nested.sh: building the tests failed" >&2; exit 80; }
        echo '#!/bin/sh' >"$job"
        echo "cd $root/vmm || exit 1; failed=0" >>"$job"
        lde_debug=""
        for exe in $(echo "$artifacts" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4); do
            # Test binaries only (target/debug/deps/NAME-HASH): the list also names lde itself
            # when cargo built it in this same call.
            case "$exe" in */deps/*) ;; *) continue ;; esac
            base=$(basename "$exe"); name=${base%-*}
            add_binary "$exe" "$exe"
            lde_debug="$(dirname "$(dirname "$exe")")/lde"
            sed -e 's/#.*//' "$job_file" | awk -v n="$name" '$1 == n' | while read -r _ args; do
                echo "echo '## $name $args'; $exe --test-threads=1 $args || failed=1"
            done >>"$job"
        done
        echo "exit \$failed" >>"$job"
        [ -x "$lde_debug" ] || unavailable "no lde binary at $lde_debug (cargo build first)"
        add_binary "$lde_debug" "$lde_debug"
        ln -s "$lde_debug" "$tree/usr/bin/lde"
        add_binary "$cache/gdb" /usr/bin/gdb
        add_binary "$(command -v objdump)" /usr/bin/objdump
        # util-linux's setpriv (busybox's lacks --reuid), for the tests that drop privileges.
        add_binary "$(command -v setpriv)" /usr/bin/setpriv
        for d in docs scripts; do mkdir -p "$tree$root" && cp -r "$root/$d" "$tree$root/"; done
        mkdir -p "$tree$root/vmm"
        ;;
esac
add_libraries
chmod +x "$job"

nonce="lde-nested-$$-$RANDOM"
cat >"$tree/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin HOME=/root LDE_HOST=nested LC_ALL=C.UTF-8
# No tmpfs on /tmp: the initramfs is writable already, and the checkout may live under /tmp.
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; chmod 1777 /tmp
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
ip link set lo up
say() { echo "@@$nonce \$*" >/dev/ttyS0; }
# Heartbeats and the diagnosis go to a serial line of their own (ttyS2), never into the work's
# output lines.
note() { echo "\$*" >/dev/ttyS2; }
for m in irqbypass kvm kvm-amd; do
    insmod /lib/modules/\$m.ko || { say "down insmod \$m failed"; poweroff -f; }
done
[ -c /dev/kvm ] || { say "down kvm_amd gave no /dev/kvm"; poweroff -f; }
# Heartbeats tell, after a time limit, whether this Linux was still alive.
(n=0; while sleep 10; do n=\$((n + 10)); note "alive \$n"; done) &
# Past three quarters of the time limit, where every user thread waits says which layer hangs:
# a vCPU thread inside KVM_RUN (kvm_vcpu_block, svm_vcpu_run) or lde's own loop.
(sleep $((time_limit * 3 / 4))
 note "diag still running after $((time_limit * 3 / 4)) s of guest time; where each user thread is:"
 for t in /proc/[0-9]*/task/[0-9]*; do
     [ -e "\${t%/task/*}/exe" ] || continue # a kernel thread
     note "diag \$t \$(cat \$t/comm) state=\$(cut -d' ' -f3 \$t/stat) wchan=\$(cat \$t/wchan)"
     head -n 6 \$t/stack 2>/dev/null | while read -r frame; do note "diag     \$frame"; done
 done) &
say begin
set -o pipefail
{ sh /job.sh </dev/null 2>&1 1>&3 3>&- | cat >/dev/ttyS1; } 3>&1 | cat
say "end \$?"
poweroff -f
EOF
chmod +x "$tree/init"
(cd "$tree" && find . | cpio -o -H newc --quiet >"$work/initrd.cpio") || unavailable "cpio failed"

# --- Boot, and follow the console --------------------------------------------------------------
mkfifo "$work/stderr.in" "$work/stderr.out"
# The work's stderr, a line at a time (a whole line per write, without the tty's \r).
while IFS= read -r line; do printf '%s\n' "${line//$'\r'/}" >&2; done <"$work/stderr.out" &
start=$SECONDS
timeout --kill-after=10 "$time_limit" qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp 1 \
    -kernel "$cache/vmlinuz" -initrd "$work/initrd.cpio" \
    -append "console=ttyS0 panic=-1 loglevel=3 quiet nohz=off highres=off" \
    -display none -monitor none -no-reboot -nodefaults \
    -serial stdio -serial "pipe:$work/stderr" -serial "file:$work/notes.log" </dev/null >"$work/console.out" 2>"$work/qemu.log" &
qemu_pid=$!
# Heartbeats that stop for $stall_limit s (the host's seconds) mean the nested Linux itself
# stopped — QEMU TCG or its kernel, below lde: QEMU is ended at once and the exit code says so.
stall_limit=120
(
    seen=""; still=0
    while sleep 10; do
        # Counted from the start of the work (the first heartbeat is due 10 s after it).
        grep -aq "@@$nonce begin" "$work/console.out" 2>/dev/null || continue
        now=$(grep -ac '^alive ' "$work/notes.log" 2>/dev/null)
        if [ "$now" != "$seen" ]; then seen=$now; still=0; continue; fi
        still=$((still + 10))
        if [ "$still" -ge "$stall_limit" ]; then
            echo "$still" >"$work/stalled"
            kill -TERM "$qemu_pid" 2>/dev/null # timeout passes it on to QEMU
            break
        fi
    done
) &
stall_watch=$!

state=boot
code=""
passed=0
failed=0
: >"$work/console.log"
while IFS= read -r line; do
    line=${line//$'\r'/}
    # Terminal escape sequences (a few console lines carry them), removed where there are any.
    case "$line" in *$'\e'*) line=$(printf '%s' "$line" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g') ;; esac
    case "$line" in
        *"@@$nonce begin"*) state=work; echo "nested.sh: nested host up after $((SECONDS - start)) s" >&2; continue ;;
        *"@@$nonce end "*) code=${line##*end }; state="ended"; continue ;;
        *"@@$nonce down "*) echo "nested.sh: ${line##*down }" >&2; continue ;;
    esac
    echo "$line" >>"$work/console.log"
    if [ "$state" != work ]; then
        if [ "$verbose" = 1 ]; then echo "$line" >&2; fi
        continue
    fi
    # libtest's verdicts, named with the host they ran on.
    case "$mode $line" in
        "tests test "*" ... ok") line="PASS (nested) ${line:5:-7}"; passed=$((passed + 1)) ;;
        "tests test "*" ... FAILED") line="FAIL (nested) ${line:5:-11}"; failed=$((failed + 1)) ;;
        "tests test "*" ... ignored") line="SKIP (nested) ${line:5:-12}: ignored" ;;
    esac
    echo "$line"
done < <(tail -f --pid="$qemu_pid" -n +1 "$work/console.out" 2>/dev/null)
wait "$qemu_pid"
qemu_status=$?
qemu_pid=""
kill "$stall_watch" 2>/dev/null
wait

if [ -n "$code" ]; then
    if [ "$mode" = tests ]; then echo "nested: $passed passed, $failed failed"; fi
    exit "$code"
fi
if [ -s "$work/stalled" ]; then
    echo "nested.sh: the nested Linux stopped: no heartbeat for $(cat "$work/stalled") s (QEMU TCG or the nested kernel hung, below lde; state: $state)" >&2
    tail -n 5 "$work/console.log" | sed 's/^/nested.sh: console: /' >&2
    exit 83
fi
if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
    alive=$(grep -a '^alive ' "$work/notes.log" | tail -n 1 | tr -d '\r')
    alive=${alive#alive }
    if [ -n "$alive" ]; then alive="$alive s after its start"; else alive="none"; fi
    echo "nested.sh: time limit of $time_limit s expired (state: $state; last heartbeat of the nested Linux: $alive)" >&2
    grep -a '^diag ' "$work/notes.log" | tr -d '\r' | sed 's/^diag /nested.sh: /' >&2
    tail -n 5 "$work/console.log" | sed 's/^/nested.sh: console: /' >&2
    exit 82
fi
echo "nested.sh: the nested host did not come up (QEMU exit $qemu_status, state: $state)" >&2
tail -n 20 "$work/console.log" | sed 's/^/nested.sh: console: /' >&2
tail -n 5 "$work/qemu.log" | sed 's/^/nested.sh: qemu: /' >&2
exit 81
}
