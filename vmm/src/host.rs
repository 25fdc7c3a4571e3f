//! What host lde runs on: which KVM (hardware VMX/SVM, nested, or PVM) and which CPU.
//!
//! A trap-cost figure means little without this: on PVM (`kvm_pvm`, KVM implemented in
//! software without VMX/SVM) guest ring 0 is emulated and ~1000 times slower, and `int 0x80` and
//! `syscall` from ring 3 do not arrive as the manuals say. See the README's "Host kinds".

use std::fmt;
use std::path::Path;

/// The kind of KVM behind /dev/kvm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmKind {
    /// Hardware virtualisation on bare metal.
    Hardware(Vendor),
    /// Hardware virtualisation exposed to a host that is itself a VM.
    Nested(Vendor),
    /// PVM: KVM in software, without VMX/SVM.
    Pvm,
    /// /dev/kvm answers but no CPU flag or module tells which kind it is.
    Unknown,
}

/// The hardware virtualisation extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Vmx,
    Svm,
}

impl KvmKind {
    /// A short machine-readable name: `hardware-vmx`, `nested-svm`, `pvm`, `unknown`.
    pub fn slug(&self) -> &'static str {
        match self {
            KvmKind::Hardware(Vendor::Vmx) => "hardware-vmx",
            KvmKind::Hardware(Vendor::Svm) => "hardware-svm",
            KvmKind::Nested(Vendor::Vmx) => "nested-vmx",
            KvmKind::Nested(Vendor::Svm) => "nested-svm",
            KvmKind::Pvm => "pvm",
            KvmKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for KvmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvmKind::Hardware(v) => write!(f, "hardware KVM ({v:?})"),
            KvmKind::Nested(v) => write!(f, "nested KVM ({v:?} exposed by an outer hypervisor)"),
            KvmKind::Pvm => write!(f, "PVM (kvm_pvm: KVM in software; guest ring 0 is emulated)"),
            KvmKind::Unknown => write!(f, "KVM of unknown kind (no vmx/svm flag, no kvm_pvm)"),
        }
    }
}

/// Facts about the host that go with every measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    pub kvm: KvmKind,
    pub cpu_model: String,
}

/// Classifies the host from /proc/cpuinfo's text and whether the kvm_pvm module is loaded.
pub fn classify(cpuinfo: &str, pvm_loaded: bool) -> HostInfo {
    let flags: Vec<&str> = field(cpuinfo, "flags").map(|f| f.split_whitespace().collect()).unwrap_or_default();
    let has = |flag: &str| flags.contains(&flag);
    let vendor = if has("vmx") {
        Some(Vendor::Vmx)
    } else if has("svm") {
        Some(Vendor::Svm)
    } else {
        None
    };
    let kvm = match (pvm_loaded, vendor) {
        (true, _) => KvmKind::Pvm,
        (false, Some(v)) if has("hypervisor") => KvmKind::Nested(v),
        (false, Some(v)) => KvmKind::Hardware(v),
        (false, None) => KvmKind::Unknown,
    };
    let cpu_model = field(cpuinfo, "model name").unwrap_or("unknown CPU").to_string();
    HostInfo { kvm, cpu_model }
}

fn field<'a>(cpuinfo: &'a str, name: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

/// Looks at this machine.
pub fn detect() -> HostInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    classify(&cpuinfo, Path::new("/sys/module/kvm_pvm").exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPYC: &str = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu vme sse2 hypervisor lm\n";

    #[test]
    fn pvm_module_wins() {
        let host = classify(EPYC, true);
        assert_eq!(host.kvm, KvmKind::Pvm);
        assert_eq!(host.cpu_model, "AMD EPYC 9B14");
        assert_eq!(host.kvm.slug(), "pvm");
    }

    #[test]
    fn vmx_svm_and_nested() {
        let bare = "model name : Intel Xeon\nflags : fpu vmx lm\n";
        assert_eq!(classify(bare, false).kvm, KvmKind::Hardware(Vendor::Vmx));
        let nested = "model name : AMD EPYC\nflags : fpu svm hypervisor\n";
        assert_eq!(classify(nested, false).kvm, KvmKind::Nested(Vendor::Svm));
        assert_eq!(classify(EPYC, false).kvm, KvmKind::Unknown);
        assert_eq!(classify("", false).cpu_model, "unknown CPU");
    }
}
