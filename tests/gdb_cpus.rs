//! `lde run --gdb --cpus 2` driven by GDB in batch mode: one GDB thread per vCPU, each with its
//! own registers and what KVM says it is doing; an application processor's breakpoint stops
//! the whole machine and is reported on that processor's thread; with GDB's scheduler locking a
//! vCPU steps while the other stays exactly where it stopped; detached, the run ends as it would
//! have.
//!
//! Where this KVM stops at no breakpoint (the nested host under QEMU 7.2 TCG) the session checks
//! the threads and the end only. GDB's Ctrl-C, which its batch mode cannot send, is sent by a
//! small client of the remote protocol: every vCPU stops, on every host.

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
    ends_normally_with(stub, context, 2);
}

/// The run ended with exit 0, `counters` counters each at its exit line, vCPU 1 having run.
fn ends_normally_with(stub: &common::Output, context: &str, counters: u32) {
    assert_eq!(stub.status, Some(0), "{context}");
    for pid in 1..=counters {
        assert!(stub.stdout.contains(&format!("exit pid={pid} name=counter status=0")), "{context}");
    }
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

/// GDB's remote protocol spoken directly (what GDB sends for Ctrl-C cannot be scripted in its
/// batch mode): a packet out, its reply back, in no-ack mode after the first exchange.
struct Rsp(std::net::TcpStream);

impl Rsp {
    fn connect(port: u16) -> Rsp {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the stub accepts");
        stream.set_read_timeout(Some(std::time::Duration::from_secs(120))).unwrap();
        let mut rsp = Rsp(stream);
        assert_eq!(rsp.ask("QStartNoAckMode"), "OK");
        rsp
    }

    fn send(&mut self, data: &str) {
        let sum = data.bytes().fold(0u8, u8::wrapping_add);
        std::io::Write::write_all(&mut self.0, format!("${data}#{sum:02x}").as_bytes()).unwrap();
    }

    /// The next packet's data (acks skipped).
    fn reply(&mut self) -> String {
        let mut data = Vec::new();
        let mut byte = [0u8; 1];
        let mut inside = false;
        loop {
            std::io::Read::read_exact(&mut self.0, &mut byte).expect("a reply before the deadline");
            match byte[0] {
                b'$' if !inside => inside = true,
                b'#' if inside => break,
                b if inside => data.push(b),
                _ => {}
            }
        }
        let mut sum = [0u8; 2];
        std::io::Read::read_exact(&mut self.0, &mut sum).unwrap();
        String::from_utf8(data).unwrap()
    }

    fn ask(&mut self, data: &str) -> String {
        self.send(data);
        let reply = self.reply();
        if data == "QStartNoAckMode" {
            std::io::Write::write_all(&mut self.0, b"+").unwrap();
        }
        reply
    }

    /// Interrupts the running machine (GDB's Ctrl-C): the stop reply.
    fn interrupt(&mut self) -> String {
        std::io::Write::write_all(&mut self.0, &[3]).unwrap();
        self.reply()
    }
}

/// What `info threads` would say of vCPU 1 (`qThreadExtraInfo`, hex-encoded text).
fn extra_info(rsp: &mut Rsp) -> String {
    let hex = rsp.ask("qThreadExtraInfo,p1.2");
    let bytes: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    String::from_utf8(bytes).unwrap()
}

/// GDB's Ctrl-C while both vCPUs run stops the whole machine: the stop names a thread, and vCPU
/// 1's registers can be read at once (its thread parked; a vCPU still inside `KVM_RUN` would hold
/// them), as often as it is tried; detached, the run ends as it would have.
#[test]
fn kvm_gdb_interrupt_stops_every_vcpu() {
    let test = "kvm_gdb_interrupt_stops_every_vcpu";
    if !common::kvm_available(test) {
        return;
    }
    let programs = ["counter 2000", "counter 2000"];
    let (child, port, rx) = start_stub_with(kvm_host(), &programs, &["--cpus", "2"]);
    let mut rsp = Rsp::connect(port);
    let mut interrupts = 0;
    // Until vCPU 1 has been started by the kernel (an event: its state, asked at each stop; the
    // pause between resume and interrupt only paces the loop, nothing depends on its length).
    loop {
        rsp.send("vCont;c");
        std::thread::sleep(std::time::Duration::from_millis(10));
        let stop = rsp.interrupt();
        interrupts += 1;
        assert!(stop.starts_with("T02"), "a SIGINT stop naming its thread: {stop}");
        assert!(stop.contains("thread:"), "{stop}");
        assert!(rsp.ask("Hgp1.2") == "OK", "vCPU 1 is a thread");
        let registers = rsp.ask("g");
        // Hex, run-length encoded (`*`); an error would be `Exx`.
        assert!(!registers.is_empty() && !registers.starts_with('E'), "vCPU 1's registers: {registers}");
        let state = extra_info(&mut rsp);
        assert!(state.starts_with("vCPU 1, "), "{state}");
        let started = !state.contains("not started") && !state.contains("INIT") && !state.contains("SIPI");
        if started || interrupts == 2000 {
            break;
        }
    }
    assert!(interrupts < 2000, "vCPU 1 never started");
    assert_eq!(rsp.ask("D"), "OK");
    let stub = finish(child, rx);
    let context = format!("{interrupts} interrupts; stub: {stub:?}");
    ends_normally_with(&stub, &context, 2);
}
