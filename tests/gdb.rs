//! `lde run --gdb` and `scripts/qemu.sh --gdb` driven by GDB in batch mode, with lde's GDB
//! commands (scripts/lde.gdb) and the exported debug files: a breakpoint in the system-call
//! dispatcher, the backtrace, the trap frame's RAX, a hardware watchpoint on a kernel counter, a
//! single step of the return to ring 3 (`sysretq` or `iretq`), detach, and the run's normal end.
//! The same session runs under KVM and under QEMU's own stub (started and driven by
//! tests/common/gdb.rs).
//!
//! What lde's stub serves depends on the host's KVM, which lde measures when GDB attaches
//! ([`serves`] holds what each host kind does, docs/platform.md): `break` is an `int3` in guest
//! memory on hardware KVM and a debug register on PVM; the nested SVM host under QEMU 7.2 TCG
//! stops at no breakpoint and no watchpoint, and there the tests check lde refuses them and says
//! why, and that single steps still work.
//!
//! GDB is needed wherever the host is: a missing `gdb` fails the test when LDE_REQUIRE_KVM=1 or
//! LDE_REQUIRE_QEMU=1 (CI, which installs it), and is a SKIP otherwise.

mod common;

use std::mem::offset_of;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;

use common::gdb::{
    export, finish, gdb_available, hex_after, kernel_returns, kvm_host, kvm_script, run_gdb, start_stub,
};
use common::{lde, repo_root, Host};
use lde_abi::stats::StatsPage;
use lde_abi::syscall as nr;

/// Whether this KVM is PVM, which reports no data breakpoints (lde refuses watchpoints there).
fn pvm(host: Host) -> bool {
    host.recovers_doors()
}

/// How a stub serves GDB's `break`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Break {
    /// An `int3` lde writes into guest memory (hardware KVM).
    Int3,
    /// A debug register (PVM, where `int3` in ring 0 kills the guest).
    DebugRegister,
    /// QEMU's own stub (TCG checks breakpoints as it translates).
    Qemu,
    /// Not at all: this KVM stops at no breakpoint (the nested host under QEMU 7.2 TCG).
    Refused,
}

/// What a host's stub does with GDB's kinds, as measured (docs/platform.md).
#[derive(Clone, Copy, Debug)]
struct Serves {
    brk: Break,
    hbreak: bool,
    watch: bool,
}

fn serves(host: Host) -> Serves {
    match host {
        Host::Qemu => Serves { brk: Break::Qemu, hbreak: true, watch: true },
        Host::Kvm if pvm(host) => Serves { brk: Break::DebugRegister, hbreak: true, watch: false },
        Host::Kvm => Serves { brk: Break::Int3, hbreak: true, watch: true },
        Host::Nested => Serves { brk: Break::Refused, hbreak: false, watch: false },
    }
}

/// lde's line when `break` is refused, and GDB's.
const BREAK_REFUSED: &str = "this KVM stops at no breakpoint";
const HBREAK_REFUSED: &str = "this KVM does not stop at a breakpoint in a debug register";
const WATCH_REFUSED: &str = "this KVM does not stop at a data breakpoint";

fn the_session(host: Host) {
    if serves(host).brk == Break::Refused {
        return the_session_without_breakpoints(host);
    }
    let dir = export(&["hello"]);
    let (sysretq, iretq) = kernel_returns(&dir.path().join("kernel.elf"));
    let watched = offset_of!(StatsPage, calls) + 8 * nr::WRITE as usize;
    // On PVM lde refuses watchpoints (GDB's batch mode would stop at the error): that refusal
    // is checked by kvm_gdb_watchpoints_fire_or_are_refused_where_kvm_reports_none.
    let watch = match serves(host).watch {
        false => String::new(),
        true => format!(
            "watch -l *(unsigned long *)((char *)&LDE_STATS + {watched})
continue
printf \"WATCHED %lu\\n\", *(unsigned long *)((char *)&LDE_STATS + {watched})
delete
"
        ),
    };
    let script = format!(
        "break lde_kernel::syscall::dispatch
continue
bt
lde-trapframe
lde-pid
delete
{watch}hbreak *{sysretq:#x}
hbreak *{iretq:#x}
continue
printf \"RETURN\\n\"
lde-trapframe
stepi
printf \"LANDED pc=%#lx cs=%#lx\\n\", $pc, $cs
x/2xb $pc-2
delete
detach
"
    );
    let (child, port, rx) = start_stub(host, &["hello"]);
    let session = run_gdb(dir.path(), port, &script);
    let stub = finish(child, rx);
    let text = format!("{}{}", session.stdout, session.stderr);
    let context = format!("GDB:\n{text}\nstub: {stub:?}");

    // The breakpoint in the dispatcher, reached from the trap path.
    assert!(text.contains("Breakpoint 1, lde_kernel::syscall::dispatch"), "{context}");
    assert!(text.contains("src/syscall.rs"), "a Rust source line: {context}");
    let bt: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert!(bt.first().is_some_and(|l| l.contains("lde_kernel::syscall::dispatch")), "{context}");
    assert!(bt.iter().any(|l| l.contains("lde_kernel::trap::syscall_arrived")), "{context}");
    // hello's first call is getpid (for its greeting): RAX in the trap frame holds its number,
    // and the frame came from ring 3.
    assert_eq!(hex_after(&text, "  rax "), nr::GETPID, "{context}");
    assert_eq!(hex_after(&text, " cs ") & 3, 3, "{context}");
    // A system call's frame leaves the callee-saved registers out, and says so.
    assert!(text.contains("rbx rbp r12 r13 r14 r15: not saved by a system call's entry"), "{context}");
    assert!(!text.contains(" rbx 0x") && !text.contains(" rbx 000"), "no stale rbx shown: {context}");
    assert!(text.contains("pid 1"), "{context}");

    // The hardware watchpoint on the kernel's write counter fires as the call is counted.
    if serves(host).watch {
        assert!(text.contains("Hardware watchpoint 2"), "{context}");
        assert!(text.contains("Old value = 0") && text.contains("New value = 1"), "{context}");
        assert!(text.contains("WATCHED 1"), "{context}");
    }

    // One step from the return instruction lands in ring 3 right after the `syscall`, where the
    // frame says the call returns.
    let returning = text.split("RETURN").nth(1).unwrap_or_else(|| panic!("{context}"));
    let return_rip = hex_after(returning, "  rip ");
    let landed = text.lines().find(|l| l.starts_with("LANDED")).unwrap_or_else(|| panic!("{context}"));
    assert_eq!(hex_after(landed, "pc="), return_rip, "{context}");
    assert_eq!(hex_after(landed, "cs=") & 3, 3, "CPL 3: {context}");
    let before =
        text.lines().find(|l| l.starts_with(&format!("{:#x}", return_rip - 2))).unwrap_or_else(|| panic!("{context}"));
    assert!(before.contains("0x0f\t0x05"), "the instruction before is `syscall`: {context}");

    // Detached, the run ends as it would have.
    assert!(text.contains("detached"), "{context}");
    assert_eq!(stub.status, Some(0), "{context}");
    assert!(stub.stdout.contains("exit pid=1 name=hello status=0"), "{context}");
}

/// The session where this KVM stops at no breakpoint (the nested host): single steps work,
/// `break` is refused with lde's line saying why, and the run ends as it would have.
fn the_session_without_breakpoints(host: Host) {
    let dir = export(&["hello"]);
    let script = "printf \"START pc=%#lx\\n\", $pc\nstepi\nstepi\nprintf \"STEPPED pc=%#lx\\n\", $pc\n\
                  break lde_kernel::syscall::dispatch\ncontinue\nprintf \"NOT REACHED\\n\"\n";
    let (child, port, rx) = start_stub(host, &["hello"]);
    let session = run_gdb(dir.path(), port, script);
    let stub = finish(child, rx);
    let text = format!("{}{}", session.stdout, session.stderr);
    let context = format!("GDB:\n{text}\nstub: {stub:?}");
    let start = text.lines().find(|l| l.starts_with("START")).unwrap_or_else(|| panic!("{context}"));
    let stepped = text.lines().find(|l| l.starts_with("STEPPED")).unwrap_or_else(|| panic!("{context}"));
    assert_ne!(hex_after(start, "pc="), hex_after(stepped, "pc="), "two steps moved the pc: {context}");
    assert!(stub.stderr.contains("`break` is refused, `hbreak` is refused, `watch` is refused"), "{context}");
    assert!(text.contains("Cannot insert breakpoint 1"), "{context}");
    assert!(stub.stderr.contains(BREAK_REFUSED), "{context}");
    assert!(!text.contains("NOT REACHED"), "GDB's batch mode stops at the error: {context}");
    assert_eq!(stub.status, Some(0), "{context}");
    assert!(stub.stdout.contains("exit pid=1 name=hello status=0"), "{context}");
}

#[test]
fn kvm_gdb_session_syscall_trapframe_watchpoint_step_to_ring3_detach() {
    let test = "kvm_gdb_session";
    if common::kvm_available(test) && gdb_available(test) {
        the_session(kvm_host());
    }
}

#[test]
fn qemu_gdb_session_syscall_trapframe_watchpoint_step_to_ring3_detach() {
    let test = "qemu_gdb_session";
    if common::qemu_available(test) && gdb_available(test) {
        the_session(Host::Qemu);
    }
}

#[test]
fn kvm_gdb_a_fifth_breakpoint_is_refused() {
    let test = "kvm_gdb_fifth_breakpoint";
    if !(common::kvm_available(test) && gdb_available(test)) {
        return;
    }
    let dir = export(&["hello"]);
    // None at the current instruction, which GDB would step over without inserting it.
    let script = "hbreak *0x100001\nhbreak *0x100002\nhbreak *0x100003\nhbreak *0x100004\nhbreak *0x100005\n\
                  monitor slots\ncontinue\n";
    let (child, port, rx) = start_stub(kvm_host(), &["hello"]);
    let session = run_gdb(dir.path(), port, script);
    let stub = finish(child, rx);
    let text = format!("{}{}", session.stdout, session.stderr);
    let context = format!("GDB:\n{text}\nstub: {stub:?}");
    assert!(text.contains("dr3 free"), "monitor slots answers: {context}");
    if serves(kvm_host()).hbreak {
        assert!(text.contains("Cannot insert hardware breakpoint 5"), "{context}");
        assert!(stub.stderr.contains("all 4 debug registers are taken"), "{context}");
    } else {
        // This KVM stops at no debug register: the first is refused already.
        assert!(text.contains("Cannot insert hardware breakpoint 1"), "{context}");
        assert!(stub.stderr.contains(HBREAK_REFUSED), "{context}");
    }
    // GDB's batch mode ends at the error and detaches: the run finishes as it would have.
    assert_eq!(stub.status, Some(0), "{context}");
}

#[test]
fn kvm_gdb_kill_stops_the_guest_with_137() {
    let test = "kvm_gdb_kill";
    if !(common::kvm_available(test) && gdb_available(test)) {
        return;
    }
    let (text, stub) = kvm_script("kill\n");
    assert_eq!(stub.status, Some(137), "{text}\n{stub:?}");
    assert!(stub.stderr.contains("GDB killed the guest"), "{stub:?}");
    assert!(!stub.stdout.contains("exit pid=1"), "the guest never ran: {stub:?}");
}

#[test]
fn kvm_gdb_watchpoints_fire_or_are_refused_where_kvm_reports_none() {
    let test = "kvm_gdb_watchpoints";
    if !(common::kvm_available(test) && gdb_available(test)) {
        return;
    }
    let watched = offset_of!(StatsPage, calls) + 8 * nr::WRITE as usize;
    let (text, stub) = kvm_script(&format!(
        "watch -l *(unsigned long *)((char *)&LDE_STATS + {watched})\ncontinue\n\
         printf \"WATCHED %lu\\n\", *(unsigned long *)((char *)&LDE_STATS + {watched})\ndetach\n"
    ));
    let context = format!("GDB:\n{text}\nstub: {stub:?}");
    if pvm(kvm_host()) {
        assert!(text.contains("Could not insert hardware watchpoint 1"), "{context}");
        assert!(stub.stderr.contains("this host (PVM) reports no data breakpoints"), "{context}");
    } else if !serves(kvm_host()).watch {
        assert!(text.contains("Could not insert hardware watchpoint 1"), "{context}");
        assert!(stub.stderr.contains(WATCH_REFUSED), "{context}");
        assert!(!text.contains("WATCHED"), "GDB's batch mode stops at the error: {context}");
    } else {
        assert!(text.contains("Old value = 0") && text.contains("New value = 1"), "{context}");
        assert!(text.contains("WATCHED 1"), "{context}");
    }
    assert_eq!(stub.status, Some(0), "{context}");
}

/// `break` and `hbreak` side by side, kept inserted while stopped (`always-inserted`) so that
/// `monitor slots` shows where each one lives and GDB reads the code under an `int3`.
#[test]
fn kvm_gdb_break_and_hbreak_each_served_as_this_kvm_allows() {
    let test = "kvm_gdb_break_and_hbreak";
    if !(common::kvm_available(test) && gdb_available(test)) {
        return;
    }
    let host = kvm_host();
    let expect = serves(host);
    if expect.brk == Break::Refused {
        // Each refusal ends GDB's batch session: one session per kind.
        let (text, stub) = kvm_script("hbreak *syscall_arrived\ncontinue\n");
        let context = format!("GDB:\n{text}\nstub: {stub:?}");
        assert!(text.contains("Cannot insert hardware breakpoint 1"), "{context}");
        assert!(stub.stderr.contains(HBREAK_REFUSED), "{context}");
        assert!(stub.stderr.contains("a DR0 breakpoint did not"), "lde says what it measured: {context}");
        assert!(stub.stderr.contains("an int3 reached the guest's own handler"), "{context}");
        assert_eq!(stub.status, Some(0), "{context}");
        let (text, stub) =
            kvm_script("set breakpoint always-inserted on\nbreak lde_kernel::syscall::dispatch\ncontinue\n");
        let context = format!("GDB:\n{text}\nstub: {stub:?}");
        assert!(text.contains("Cannot insert breakpoint 1"), "{context}");
        assert!(stub.stderr.contains(BREAK_REFUSED), "{context}");
        assert_eq!(stub.status, Some(0), "{context}");
        return;
    }
    let (text, stub) = kvm_script(
        "set breakpoint always-inserted on
break lde_kernel::syscall::dispatch
hbreak *syscall_arrived
monitor slots
info breakpoints 1
x/1xb $_
continue
printf \"STOP1 pc=%#lx\\n\", $pc
delete 2
continue
printf \"STOP2 pc=%#lx\\n\", $pc
delete
detach
",
    );
    let context = format!("GDB:\n{text}\nstub: {stub:?}");
    let dispatch = hex_after(&text, "Breakpoint 1 at ");
    let arrived = hex_after(&text, "Hardware assisted breakpoint 2 at ");
    // hello's first system call reaches syscall_arrived (hbreak) first, then the dispatcher
    // (break).
    assert!(text.lines().any(|l| l.starts_with("Breakpoint 2, ") && l.contains("syscall_arrived")), "{context}");
    assert!(
        text.lines().any(|l| l.starts_with("Breakpoint 1, ") && l.contains("lde_kernel::syscall::dispatch")),
        "{context}"
    );
    let stop =
        |key: &str| hex_after(text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{context}")), "pc=");
    assert_eq!(stop("STOP1"), arrived, "{context}");
    assert_eq!(stop("STOP2"), dispatch, "{context}");
    // Where each one lives: the hbreak in a debug register; the break in guest memory or in one.
    assert!(
        text.contains(&format!("dr0 {arrived:#x} Execute {{ software: false }}"))
            || text.contains(&format!("dr1 {arrived:#x} Execute {{ software: false }}")),
        "{context}"
    );
    match expect.brk {
        Break::Int3 => {
            assert!(text.contains(&format!("int3 {dispatch:#x}")), "{context}");
            assert!(stub.stderr.contains("`break` writes int3 into guest memory"), "{context}");
        }
        _ => {
            assert!(text.contains(&format!("dr0 {dispatch:#x} Execute {{ software: true }}")), "{context}");
            assert!(
                stub.stderr.contains("`break` takes a debug register (int3 in ring 0 is fatal on PVM)"),
                "{context}"
            );
        }
    }
    // GDB reads the code, never lde's int3.
    let code = text.lines().find(|l| l.starts_with(&format!("{dispatch:#x} <"))).unwrap_or_else(|| panic!("{context}"));
    assert!(!code.ends_with("0xcc"), "{context}");
    assert_eq!(stub.status, Some(0), "{context}");
    assert!(stub.stdout.contains("exit pid=1 name=hello status=0"), "{context}");
}

#[test]
fn kvm_gdb_lost_connection_lets_the_run_finish() {
    let test = "kvm_gdb_lost_connection";
    if !common::kvm_available(test) {
        return;
    }
    let (child, port, rx) = start_stub(kvm_host(), &["hello"]);
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let stub = finish(child, rx);
    assert_eq!(stub.status, Some(0), "{stub:?}");
    assert!(stub.stderr.contains("the connection to GDB was lost; the guest runs on without it"), "{stub:?}");
    assert!(stub.stdout.contains("exit pid=1 name=hello status=0"), "{stub:?}");
}

#[test]
fn bad_gdb_addresses_are_usage_errors() {
    let bad = lde(&["run", "--gdb=localhost:1234", "hello"]);
    assert_eq!(bad.status, Some(2), "{bad:?}");
    assert!(bad.stderr.contains("neither IP:PORT"), "{bad:?}");
    assert_eq!(bad.stderr.lines().count(), 1, "{bad:?}");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("--gdb={}", taken.local_addr().unwrap());
    let busy = lde(&["run", &addr, "hello"]);
    assert_eq!(busy.status, Some(2), "{busy:?}");
    assert!(busy.stderr.contains("the address is in use"), "{busy:?}");
    assert_eq!(busy.stderr.lines().count(), 1, "{busy:?}");
}

#[test]
fn export_writes_debug_files_whose_code_is_what_boots() {
    let dir = export(&["hello"]);
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    let boot = std::fs::read(path("kernel.elf")).unwrap();
    let debug = std::fs::read(path("kernel.debug")).unwrap();
    assert!(debug.len() > boot.len());
    // Every loaded segment of the debug kernel is byte for byte the booted one's.
    let segments = |elf: &[u8]| -> Vec<(u64, Vec<u8>)> {
        use object::read::elf::{ElfFile64, ProgramHeader};
        let file = ElfFile64::<object::Endianness>::parse(elf).unwrap();
        let endian = file.endian();
        file.elf_program_headers()
            .iter()
            .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
            .map(|p| (p.p_vaddr(endian), p.data(endian, elf).unwrap().to_vec()))
            .collect()
    };
    assert_eq!(segments(&boot), segments(&debug));
    let has_section = |elf: &[u8], name: &str| {
        use object::{Object, ObjectSection};
        object::File::parse(elf).unwrap().sections().any(|s| s.name() == Ok(name))
    };
    assert!(has_section(&debug, ".debug_line") && !has_section(&boot, ".debug_line"));
    assert!(has_section(&std::fs::read(path("programs/hello.debug")).unwrap(), ".debug_info"));
    // The offsets scripts/lde.gdb reads at are the kernel's.
    let script = std::fs::read_to_string(repo_root().join("scripts/lde.gdb")).unwrap();
    let current_pid = offset_of!(StatsPage, cpus) + offset_of!(lde_abi::stats::CpuStats, current_pid);
    assert!(script.contains(&format!("$lde_current_pid_offset = {current_pid}")));
    assert!(script.contains("$lde_trapframe_size = 176"));
    // The kernel asserts the same offset (arch/x86_64/percpu.rs).
    assert!(script.contains("$lde_syscall_rsp_offset = 8"));
}
