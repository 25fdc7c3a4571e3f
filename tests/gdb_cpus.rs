//! `lde run --gdb --cpus 2` driven by GDB in batch mode: one GDB thread per vCPU, each with its
//! own registers and what KVM says it is doing; an application processor's breakpoint stops
//! the whole machine and is reported on that processor's thread; with GDB's scheduler locking a
//! vCPU steps while the other stays exactly where it stopped; detached, the run ends as it would
//! have.
//!
//! Where this KVM stops at no breakpoint (the nested host under QEMU 7.2 TCG) the session checks
//! the threads and the end only.

mod common;

use common::gdb::{export, finish, gdb_available, hex_after, kvm_host, run_gdb, start_stub_with};
use common::Host;

/// Long enough for both processors' timers to tick a few times.
const PROGRAMS: [&str; 2] = ["counter 100", "counter 100"];

/// The line starting with `key` in GDB's output.
fn line<'t>(text: &'t str, key: &str, context: &str) -> &'t str {
    text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key}: {context}"))
}

/// The session where this KVM stops at breakpoints in debug registers.
fn with_breakpoints() -> (String, common::Output) {
    let script = "info threads
hbreak lde_kernel::smp::ap_main
continue
info threads
thread 1
printf \"HELD0 pc=%#lx rsp=%#lx\\n\", $pc, $rsp
thread 2
printf \"AP0 pc=%#lx rsp=%#lx\\n\", $pc, $rsp
delete
set scheduler-locking on
stepi
stepi
stepi
printf \"AP3 pc=%#lx\\n\", $pc
thread 1
printf \"HELD3 pc=%#lx\\n\", $pc
set scheduler-locking off
thread 2
break lde_kernel::tick::ap_timer
continue
bt
delete
break lde_kernel::tick::timer
continue
thread 2
printf \"RUNNING pc=%#lx\\n\", $pc
thread 1
set scheduler-locking on
stepi
stepi
thread 2
printf \"PAUSED pc=%#lx\\n\", $pc
set scheduler-locking off
delete
detach
";
    let dir = export(&PROGRAMS);
    let (child, port, rx) = start_stub_with(kvm_host(), &PROGRAMS, &["--cpus", "2"]);
    let session = run_gdb(dir.path(), port, script);
    let stub = finish(child, rx);
    (format!("{}{}", session.stdout, session.stderr), stub)
}

#[test]
fn kvm_gdb_sees_a_thread_per_vcpu_and_stops_them_all() {
    let test = "kvm_gdb_cpus";
    if !(common::kvm_available(test) && gdb_available(test)) {
        return;
    }
    if kvm_host() == Host::Nested {
        return threads_and_end_only();
    }
    let (text, stub) = with_breakpoints();
    let context = format!("GDB:\n{text}\nstub: {stub:?}");
    // Before the first instruction: vCPU 1 exists and waits for the kernel's INIT and SIPI.
    assert!(text.contains("(vCPU 0, runnable)"), "{context}");
    assert!(text.contains("(vCPU 1, not started: waiting for INIT)"), "{context}");
    // The application processor's breakpoint is reported on its thread.
    let hit = |function: &str| text.lines().any(|l| l.starts_with("Thread 2 hit ") && l.contains(function));
    assert!(hit("reakpoint 1, lde_kernel::smp::ap_main"), "{context}");
    // Each thread has its own registers.
    let (held, ap) = (line(&text, "HELD0", &context), line(&text, "AP0", &context));
    assert_ne!(hex_after(held, "rsp="), hex_after(ap, "rsp="), "{context}");
    // Three steps of vCPU 1 under scheduler locking move it; vCPU 0 stays where it stopped.
    assert_ne!(hex_after(ap, "pc="), hex_after(line(&text, "AP3", &context), "pc="), "{context}");
    assert_eq!(hex_after(held, "pc="), hex_after(line(&text, "HELD3", &context), "pc="), "{context}");
    // A breakpoint only application processors reach (their timer), armed on vCPU 1 too.
    assert!(hit("Breakpoint 2, lde_kernel::tick::ap_timer"), "{context}");
    assert!(text.lines().any(|l| l.starts_with('#') && l.contains("lde_kernel::trap::trap_dispatch")), "{context}");
    // vCPU 0's own timer, while vCPU 1 was running: vCPU 1 was paused before GDB heard of the
    // stop (its registers could be read at all), and stays where it was while vCPU 0 steps.
    assert!(text.lines().any(|l| l.starts_with("Thread 1 hit Breakpoint 3, lde_kernel::tick::timer")), "{context}");
    let (running, paused) = (line(&text, "RUNNING", &context), line(&text, "PAUSED", &context));
    assert_eq!(hex_after(running, "pc="), hex_after(paused, "pc="), "{context}");
    // Detached, both processes run to their ends on both processors.
    assert!(text.contains("detached"), "{context}");
    ends_normally(&stub, &context);
}

/// This KVM stops at no breakpoint: GDB still sees both vCPUs, and detached, the run ends.
fn threads_and_end_only() {
    let dir = export(&PROGRAMS);
    let (child, port, rx) = start_stub_with(kvm_host(), &PROGRAMS, &["--cpus", "2"]);
    let session = run_gdb(dir.path(), port, "info threads\nstepi\ndetach\n");
    let stub = finish(child, rx);
    let text = format!("{}{}", session.stdout, session.stderr);
    let context = format!("GDB:\n{text}\nstub: {stub:?}");
    assert!(text.contains("(vCPU 1, not started: waiting for INIT)"), "{context}");
    assert!(text.contains("detached"), "{context}");
    ends_normally(&stub, &context);
}

fn ends_normally(stub: &common::Output, context: &str) {
    assert_eq!(stub.status, Some(0), "{context}");
    assert!(stub.stdout.contains("exit pid=1 name=counter status=0"), "{context}");
    assert!(stub.stdout.contains("exit pid=2 name=counter status=0"), "{context}");
    assert!(stub.stderr.contains("lde: cpu 1:"), "vCPU 1 ran: {context}");
}

/// Waiting for GDB, every vCPU parked: the timeout still ends the run, with its own code.
#[test]
fn kvm_gdb_cpus_waiting_for_gdb_end_at_the_timeout() {
    if !common::kvm_available("kvm_gdb_cpus_waiting_for_gdb_end_at_the_timeout") {
        return;
    }
    let out = common::lde(&["run", "-q", "--cpus", "2", "--gdb=127.0.0.1:0", "--timeout", "1", "hello"]);
    assert_eq!(out.status, Some(124), "{out:?}");
    assert!(out.stderr.contains("lde: timeout: "), "{out:?}");
}
