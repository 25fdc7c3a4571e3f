//! The run's disks (`--disk`): each image behind a virtio-blk device at its place in the MMIO
//! hole, its interrupt an irqfd on its I/O APIC input, its queue notifications an ioeventfd the
//! event loop waits on, and its announcement on the kernel command line.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use lde_abi::virtio::{mmio_base, reg, IRQ_BASE};
use linux_loader::cmdline::Cmdline;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::Error;
use crate::devices::virtio::{lock, BlockDevice, DiskCounts, DiskImage, DiskPort, ANNOUNCED_SIZE};

/// One disk of the run.
pub struct Disk {
    pub device: Arc<Mutex<BlockDevice>>,
    /// Signalled for each QueueNotify write: by KVM itself (an ioeventfd), or by the vCPU thread
    /// from the MMIO exit where KVM could not take the ioeventfd.
    pub notify: EventFd,
}

impl Disk {
    /// The disk as the vCPU thread reaches it.
    pub fn port(&self) -> Result<DiskPort, Error> {
        let notify = self.notify.try_clone().map_err(|e| Error::Host("disk notify eventfd", e))?;
        Ok(DiskPort { device: self.device.clone(), notify })
    }
}

/// Creates a device for each image (disk `i` at `mmio_base(i)`, I/O APIC input `IRQ_BASE + i`)
/// and wires its interrupt and notifications into `vm`.
pub fn attach(vm: &VmFd, mem: &GuestMemoryMmap, images: Vec<DiskImage>) -> Result<Vec<Disk>, Error> {
    let mut disks = Vec::with_capacity(images.len());
    for (index, image) in images.into_iter().enumerate() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Host("disk irq eventfd", e))?;
        vm.register_irqfd(&irq, IRQ_BASE + index as u32).map_err(|e| Error::Setup("disk irqfd", e))?;
        let notify = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Host("disk notify eventfd", e))?;
        let at = IoEventAddress::Mmio(mmio_base(index) + reg::QUEUE_NOTIFY);
        let ioeventfd = match vm.register_ioevent(&notify, &at, NoDatamatch) {
            Ok(()) => true,
            Err(e) => {
                log::info!("disk {index}: no ioeventfd ({e}); queue notifications take an MMIO exit");
                false
            }
        };
        let mut device = BlockDevice::new(image, mem.clone(), irq);
        device.set_ioeventfd(ioeventfd);
        disks.push(Disk { device: Arc::new(Mutex::new(device)), notify });
    }
    Ok(disks)
}

/// The `virtio_mmio.device=` words announcing `count` disks, as linux-loader writes them.
pub fn cmdline_words(count: usize) -> Result<String, Error> {
    let mut line = Cmdline::new(4096).map_err(|e| Error::Host("disk command line", io::Error::other(e)))?;
    for index in 0..count {
        line.add_virtio_mmio_device(ANNOUNCED_SIZE, GuestAddress(mmio_base(index)), IRQ_BASE + index as u32, None)
            .map_err(|e| Error::Host("disk command line", io::Error::other(e)))?;
    }
    let words = line.as_cstring().map_err(|e| Error::Host("disk command line", io::Error::other(e)))?;
    Ok(words.to_string_lossy().into_owned())
}

/// The event loop's side of a disk: serves its queue whenever it is notified.
pub struct QueueServer {
    device: Arc<Mutex<BlockDevice>>,
    notify: EventFd,
}

impl QueueServer {
    pub fn new(disk: &Disk) -> Result<QueueServer, Error> {
        let notify = disk.notify.try_clone().map_err(|e| Error::Host("disk notify eventfd", e))?;
        Ok(QueueServer { device: disk.device.clone(), notify })
    }
}

impl MutEventSubscriber for QueueServer {
    fn init(&mut self, ops: &mut EventOps) {
        ops.add(Events::new_raw(self.notify.as_raw_fd(), EventSet::IN))
            .expect("a fresh eventfd can be added to the event loop");
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.notify.read();
        if let Err(e) = lock(&self.device).process_queue() {
            log::warn!("disk: cannot raise the interrupt: {e}");
        }
    }
}

/// Flushes every disk (the writes the guest saw complete reach the file) and returns their
/// counts; called once the vCPU has stopped, however the run ended.
pub fn finish(disks: &[Arc<Mutex<BlockDevice>>]) -> Result<Vec<DiskCounts>, Error> {
    disks
        .iter()
        .map(|device| {
            let device = lock(device);
            device.flush().map_err(|e| Error::DiskFlush(device.image().path().to_path_buf(), e))?;
            Ok(device.counts())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_each_disk_as_linux_expects() {
        assert_eq!(cmdline_words(0).unwrap(), "");
        assert_eq!(cmdline_words(2).unwrap(), "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6");
    }
}
