//! A process's own memory as a system call sees it: whether a buffer it passes is mapped for it
//! (and writable), its demand-zero pages mapped on the way. `syscall.rs` and `disk.rs` both ask.

use lde_abi::syscall::EFAULT;
use lde_kcore::usercopy::user_range;

use crate::arch::percpu;
use crate::exec;
use crate::process::KERNEL;

/// Whether every page of `[ptr, ptr + len)` is mapped for ring 3 (and writable if `write`),
/// mapping the demand-zero pages among them that were not touched yet.
pub fn user_pages_ok(ptr: u64, len: u64, write: bool) -> Result<(), i64> {
    let (first, end) = user_range(ptr, len)?;
    KERNEL.with(|k| {
        let slot = percpu::current().ok_or(-EFAULT)?;
        let mut page = first;
        while page < end {
            let space = k.procs.get(slot).machine.space.as_ref().ok_or(-EFAULT)?;
            let flags = match space.translate(page) {
                Some((_, flags)) => flags,
                None if exec::demand_zero(k, page) => continue, // now mapped: check again
                None => return Err(-EFAULT),
            };
            if write && !flags.writable {
                return Err(-EFAULT);
            }
            page += 4096;
        }
        Ok(())
    })
}
