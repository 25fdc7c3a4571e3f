//! Why lde could not run the guest at all, and the exit status each reason maps to.

use std::io;
use std::path::PathBuf;

use lde_abi::exit_code as code;

use crate::boot;
use crate::layout;
use crate::observe::monitor::ApiError;

/// Why lde could not run the guest at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} does not exist: KVM is not available here (load kvm_intel or kvm_amd, or enable nested virtualization for this VM)")]
    KvmMissing(PathBuf),
    #[error("no permission to open {0}: add your user to the kvm group (sudo usermod -aG kvm $USER) and log in again")]
    KvmPermission(PathBuf),
    #[error("cannot open {0}")]
    KvmOpen(PathBuf, #[source] io::Error),
    #[error("{0} is not a usable KVM device")]
    NotKvm(PathBuf, #[source] kvm_ioctls::Error),
    #[error("KVM lacks {0}, which lde needs")]
    KvmCapability(&'static str),
    #[error("cannot read the kernel {0}")]
    KernelRead(PathBuf, #[source] crate::files::Error),
    #[error("cannot boot the kernel {0}")]
    Kernel(String, #[source] boot::Error),
    #[error(transparent)]
    Limit(boot::Error),
    #[error("--mem {0} MiB is out of range: give {min} to {max}", min = layout::MEM_MIN_MIB, max = layout::MEM_MAX_MIB)]
    MemSize(u64),
    #[error("cannot allocate {0} MiB of guest memory")]
    Memory(u64, #[source] vm_memory::mmap::FromRangesError),
    #[error("cannot set up the VM: {0}")]
    Setup(&'static str, #[source] kvm_ioctls::Error),
    #[error("cannot set up the VMM: {0}")]
    Host(&'static str, #[source] io::Error),
    #[error("the vCPU failed")]
    VcpuRun(#[source] kvm_ioctls::Error),
    #[error("cannot serve the API socket")]
    Api(#[source] ApiError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::Error),
    #[error(transparent)]
    Disk(#[from] crate::devices::virtio::image::Error),
    #[error("cannot flush the disk image {0}: writes the guest saw complete may not be on disk")]
    DiskFlush(PathBuf, #[source] io::Error),
}

impl Error {
    /// A boot error as the user should see it: a limit of the command line or of guest memory
    /// they can change ([`Error::Limit`], a usage error), or a problem of the kernel file.
    pub(super) fn boot(kernel: &str, e: boot::Error) -> Error {
        match e {
            boot::Error::CmdlineTooLong(_) | boot::Error::CmdlineNul | boot::Error::InitrdTooBig(_) => Error::Limit(e),
            e => Error::Kernel(kernel.to_string(), e),
        }
    }

    /// The exit status of the lde process for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::KvmMissing(_)
            | Error::KvmPermission(_)
            | Error::KvmOpen(..)
            | Error::NotKvm(..)
            | Error::KvmCapability(_) => code::KVM_UNAVAILABLE,
            Error::KernelRead(..) | Error::Kernel(..) => code::BAD_IMAGE,
            Error::Disk(crate::devices::virtio::image::Error::TooMany(_)) => code::USAGE,
            Error::Disk(_) => code::BAD_IMAGE,
            Error::MemSize(_) | Error::Limit(_) => code::USAGE,
            Error::Memory(..)
            | Error::Setup(..)
            | Error::Host(..)
            | Error::VcpuRun(_)
            | Error::Api(_)
            | Error::Seccomp(_)
            | Error::DiskFlush(..) => code::VMM_FAILED,
        }
    }
}
