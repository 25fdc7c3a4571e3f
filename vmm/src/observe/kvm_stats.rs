//! KVM's own statistics of the vCPU (KVM_GET_STATS_FD, Linux 5.14+), where the host offers
//! them: how often the vCPU exited, and why, including the exits KVM handled without lde.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

use kvm_ioctls::VcpuFd;
use vmm_sys_util::ioctl::ioctl;
use vmm_sys_util::ioctl_io_nr;

ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);

/// Header of the binary stats file (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD").
const HEADER_SIZE: usize = 24;
/// Size of a descriptor before its name.
const DESC_FIXED: usize = 16;

/// An open view of one vCPU's KVM statistics.
pub struct KvmStats {
    file: File,
    /// (name, offset into the data block, number of u64 values).
    descs: Vec<(String, u32, u16)>,
    data_offset: u64,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

impl KvmStats {
    /// Opens the vCPU's statistics; `None` when this KVM does not offer them.
    pub fn open(vcpu: &VcpuFd) -> Option<KvmStats> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
        let fd = unsafe { ioctl(vcpu, KVM_GET_STATS_FD()) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the ioctl returned a fresh fd that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut header = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header, 0).ok()?;
        let (name_size, num_desc, desc_offset, data_offset) =
            (u32_at(&header, 4) as usize, u32_at(&header, 8) as usize, u32_at(&header, 16), u32_at(&header, 20));
        if num_desc > 10_000 || name_size > 1024 {
            return None;
        }
        let entry = DESC_FIXED + name_size;
        let mut raw = vec![0u8; num_desc * entry];
        file.read_exact_at(&mut raw, u64::from(desc_offset)).ok()?;
        let descs = raw
            .chunks_exact(entry)
            .map(|d| {
                let size = u16::from_le_bytes([d[6], d[7]]);
                let offset = u32_at(d, 8);
                let name = &d[DESC_FIXED..];
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                (String::from_utf8_lossy(&name[..end]).into_owned(), offset, size)
            })
            .collect();
        let _ = file.as_raw_fd();
        Some(KvmStats { file, descs, data_offset: u64::from(data_offset) })
    }

    /// Every statistic's current value (a histogram's buckets summed).
    pub fn read(&self) -> BTreeMap<String, u64> {
        self.descs.iter().filter_map(|d| Some((d.0.clone(), self.value_of(d)?))).collect()
    }

    /// One statistic's current value (one `pread`), if this KVM offers it.
    pub fn value(&self, name: &str) -> Option<u64> {
        self.descs.iter().find(|d| d.0 == name).and_then(|d| self.value_of(d))
    }

    fn value_of(&self, (_, offset, size): &(String, u32, u16)) -> Option<u64> {
        let mut buf = vec![0u8; usize::from(*size) * 8];
        self.file.read_exact_at(&mut buf, self.data_offset + u64::from(*offset)).ok()?;
        Some(buf.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).sum())
    }
}
