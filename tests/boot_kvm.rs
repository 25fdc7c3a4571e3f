//! Boots the real kernel under KVM and checks the banner, exit codes, and crash reports.

mod common;

use common::{kvm_available, lde};

#[test]
fn boots_prints_banner_and_exits_zero() {
    if !kvm_available("boots_prints_banner_and_exits_zero") {
        return;
    }
    let out = lde(&["run", "--cmdline", "hello=world"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let banner = out.line_starting("lde kernel ").unwrap_or_else(|| panic!("no banner: {out:?}"));
    assert!(banner.contains("MiB RAM in 3 ranges"), "{banner}");
    assert!(banner.contains("cmdline \"lde.run=hello ") && banner.contains(" hello=world"), "{banner}");
    assert!(banner.contains("cpu "), "{banner}");
    assert!(out.lines().contains(&"kernel: all processes ended, shutting down with code 0"), "{out:?}");
    // The VMM says which KVM it is on, and how long boot took.
    assert!(out.stderr.contains("lde: host: "), "{}", out.stderr);
    assert!(out.stderr.contains("banner after "), "{}", out.stderr);
}

#[test]
fn memory_size_reaches_the_kernel() {
    if !kvm_available("memory_size_reaches_the_kernel") {
        return;
    }
    let out = lde(&["run", "-q", "--mem", "64"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    // 64 MiB less the 385 KiB legacy hole below 1 MiB, rounded down.
    assert!(out.line_starting("lde kernel ").unwrap().contains(": 63 MiB RAM"), "{out:?}");
    assert_eq!(out.stderr, "", "quiet prints nothing of its own");
}

#[test]
fn kernel_panic_exits_three() {
    if !kvm_available("kernel_panic_exits_three") {
        return;
    }
    let out = lde(&["run", "--cmdline", "lde.test=panic"]);
    assert_eq!(out.status, Some(3), "{out:?}");
    assert!(out.stdout.contains("kernel panic: "), "{out:?}");
    assert!(out.stdout.contains("test hook lde.test=panic"), "{out:?}");
}

#[test]
fn kernel_exception_is_reported_with_registers() {
    if !kvm_available("kernel_exception_is_reported_with_registers") {
        return;
    }
    let out = lde(&["run", "--cmdline", "lde.test=kernel-fault"]);
    assert_eq!(out.status, Some(3), "{out:?}");
    let line = out.line_starting("kernel: fatal trap").unwrap_or_else(|| panic!("{out:?}"));
    assert!(line.starts_with("kernel: fatal trap #UD (vector 6) in ring 0, error 0x0, rip 0x"), "{line}");
    assert!(out.stdout.contains("  rip 0"), "{out:?}");
    assert!(out.stdout.contains(" cs 0010 "), "kernel code selector: {out:?}");
}

#[test]
fn triple_fault_dumps_registers_and_exits_70() {
    if !kvm_available("triple_fault_dumps_registers_and_exits_70") {
        return;
    }
    let out = lde(&["run", "--cmdline", "lde.test=triple-fault"]);
    assert_eq!(out.status, Some(70), "{out:?}");
    assert!(out.stderr.contains("lde: guest crashed: triple fault (KVM_EXIT_SHUTDOWN)"), "{}", out.stderr);
    assert!(out.stderr.contains("rip "), "{}", out.stderr);
    let reset_said = out.stderr.contains("these are the vCPU's reset state, not the state at the fault");
    if svm_resets_on_shutdown() {
        // KVM on AMD SVM INITs the vCPU on a shutdown intercept: lde must say so.
        assert!(reset_said, "{}", out.stderr);
        assert!(out.stderr.contains("rip 000000000000fff0"), "{}", out.stderr);
        assert!(out.stderr.contains("cs  selector f000 base 00000000ffff0000"), "{}", out.stderr);
    } else {
        // The dump shows the state that caused it: 64-bit kernel code and the empty IDT.
        assert!(!reset_said, "{}", out.stderr);
        assert!(out.stderr.contains("idt base 0000000000000000 limit 0000"), "{}", out.stderr);
        assert!(out.stderr.contains("cs  selector 0010 "), "{}", out.stderr);
        assert!(out.stderr.contains("cr0 0000000080010011"), "{}", out.stderr);
    }
    assert!(out.stderr.lines().all(|l| l.starts_with("lde: ")), "every line is lde's: {}", out.stderr);
}

#[test]
fn timeout_stops_a_hung_guest() {
    if !kvm_available("timeout_stops_a_hung_guest") {
        return;
    }
    let out = lde(&["run", "--timeout", "1", "--cmdline", "lde.test=hang"]);
    assert_eq!(out.status, Some(124), "{out:?}");
    assert!(out.stderr.contains("lde: timeout: the guest was still running after 1 s"), "{}", out.stderr);
}

#[test]
fn sigterm_stops_the_guest_cleanly() {
    if !kvm_available("sigterm_stops_the_guest_cleanly") {
        return;
    }
    use std::io::{BufRead, Read};
    use std::time::Duration;
    let mut child = std::process::Command::new(common::lde_bin())
        .args(["run", "--cmdline", "lde.test=hang"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the guest to be up (its banner, then the hook's line), then ask lde to stop.
    let (up, is_up) = std::sync::mpsc::channel();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("kernel: test hook: halting with interrupts off") {
                up.send(()).ok();
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).ok();
        text
    });
    if is_up.recv_timeout(Duration::from_secs(60)).is_err() {
        child.kill().ok();
        child.wait().ok();
        panic!("no hook line within 60 s: {}", reader.join().unwrap());
    }
    // SAFETY: sends SIGTERM to the child we spawned and still own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = common::wait_with_deadline(&mut child, "lde run lde.test=hang", Duration::from_secs(30));
    let (stdout, stderr) = (reader.join().unwrap(), errors.join().unwrap());
    assert_eq!(status, Some(130), "{stdout}{stderr}");
    assert!(stdout.contains("lde kernel "), "the banner came first: {stdout}");
    assert!(stderr.contains("lde: interrupted by signal 15; stopped the guest"), "{stderr}");
}

#[test]
fn nothing_to_run_boots_and_shuts_down() {
    if !kvm_available("nothing_to_run_boots_and_shuts_down") {
        return;
    }
    let out = lde(&["run", "--none"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let banner = out.line_starting("lde kernel ").unwrap_or_else(|| panic!("no banner: {out:?}"));
    assert!(!banner.contains("lde.run="), "no program word: {banner}");
    assert!(out.lines().contains(&"kernel: nothing to run, shutting down with code 0"), "{out:?}");
    assert!(out.stderr.contains("lde: processes: 0 started"), "{}", out.stderr);
}

/// Whether this KVM resets the vCPU on a triple fault: KVM on AMD SVM (the nested host, or AMD
/// hardware), not PVM (which does not use SVM) nor Intel's VMX.
fn svm_resets_on_shutdown() -> bool {
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let amd = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains("AuthenticAMD"));
    !pvm && amd
}
