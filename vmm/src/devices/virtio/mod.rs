//! A virtio block device on the virtio-mmio transport, version 2 (virtio 1.x): the registers
//! the guest reaches through MMIO exits on the vCPU thread, and the one request queue, served on
//! the event-loop thread.
//!
//! The way a request travels: the driver writes QueueNotify; KVM signals an ioeventfd for that
//! write (or, where it cannot, the vCPU thread signals the same eventfd from the MMIO exit), so
//! the vCPU goes straight back into the guest; the event loop wakes on the eventfd, serves every
//! available chain against the image ([`block::serve`]), puts them in the used ring, sets the
//! interrupt status and signals the irqfd, which raises the device's I/O APIC input.

pub mod block;
pub mod image;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lde_abi::virtio::{
    feature, reg, status, DEVICE_ID_BLOCK, INT_USED_BUFFER, MAGIC, MMIO_STRIDE, QUEUE_SIZE, SECTOR_SIZE, VERSION_MODERN,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub use image::{DiskImage, DiskSpec};

/// lde's vendor id in the VendorID register ("lde" in ASCII).
const VENDOR_ID: u32 = 0x0065_646c;
/// Bytes of the block device's configuration space (`struct virtio_blk_config`).
const CONFIG_SIZE: u64 = 0x3c;

/// What the device did, for the run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskCounts {
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub flushes: u64,
    /// Requests answered with an error status.
    pub errors: u64,
    /// Interrupts raised (one per batch of completed requests).
    pub interrupts: u64,
    /// Whether KVM took the queue notifications itself (an ioeventfd: no exit to lde).
    pub ioeventfd: bool,
    /// Queue notifications that reached lde through an MMIO exit (0 where `ioeventfd` holds).
    pub notify_exits: u64,
}

/// One disk: the transport's registers, the request queue, and the image behind them.
pub struct BlockDevice {
    image: DiskImage,
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: EventFd,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
    counts: DiskCounts,
}

impl BlockDevice {
    /// A device serving `image` in `mem`, raising its interrupt by writing `interrupt` (an
    /// eventfd registered as the device's irqfd).
    pub fn new(image: DiskImage, mem: GuestMemoryMmap, interrupt: EventFd) -> BlockDevice {
        BlockDevice {
            image,
            mem,
            queue: Queue::new(QUEUE_SIZE).expect("QUEUE_SIZE is a power of two no larger than virtio's 32768"),
            interrupt,
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
            counts: DiskCounts::default(),
        }
    }

    /// Notes whether KVM signals queue notifications itself (see [`DiskCounts::ioeventfd`]).
    pub fn set_ioeventfd(&mut self, ioeventfd: bool) {
        self.counts.ioeventfd = ioeventfd;
    }

    pub fn counts(&self) -> DiskCounts {
        self.counts
    }

    pub fn image(&self) -> &DiskImage {
        &self.image
    }

    fn device_features(&self) -> u64 {
        let ro = if self.image.read_only() { 1 << feature::BLK_RO } else { 0 };
        (1 << feature::VERSION_1) | (1 << feature::BLK_FLUSH) | ro
    }

    /// A read of `data.len()` bytes at `offset` from the device's base.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= reg::CONFIG {
            self.read_config(offset - reg::CONFIG, data);
            return;
        }
        if data.len() != 4 || offset % 4 != 0 {
            return; // registers are read 32 bits at a time; anything else reads as zeros
        }
        let value = match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION_MODERN,
            reg::DEVICE_ID => DEVICE_ID_BLOCK,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features() as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX if self.queue_sel == 0 => u32::from(self.queue.max_size()),
            reg::QUEUE_READY if self.queue_sel == 0 => u32::from(self.queue.ready()),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            _ => 0, // write-only and unknown registers, CONFIG_GENERATION (the config never changes)
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let capacity = (self.image.sectors()).to_le_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset.saturating_add(i as u64);
            if at < CONFIG_SIZE {
                *byte = capacity.get(at as usize).copied().unwrap_or(0);
            }
        }
    }

    /// A write of `data` at `offset` from the device's base. Returns whether it was a queue
    /// notification (which the caller passes on to the event loop).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else { return false };
        if offset % 4 != 0 || offset >= reg::CONFIG {
            return false; // the configuration space is read-only; registers take 32-bit writes
        }
        let value = u32::from_le_bytes(bytes);
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES => match self.driver_features_sel {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32),
                _ => {}
            },
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NOTIFY => {
                self.counts.notify_exits = self.counts.notify_exits.saturating_add(1);
                return value == 0;
            }
            reg::INTERRUPT_ACK => self.interrupt_status &= !value,
            reg::STATUS => self.write_status(value),
            _ if self.queue_sel == 0 && !self.queue.ready() => self.write_queue(offset, value),
            _ => {} // read-only registers, another queue, or a live queue's set-up
        }
        false
    }

    fn write_queue(&mut self, offset: u64, value: u32) {
        match offset {
            reg::QUEUE_NUM => self.queue.set_size(value.try_into().unwrap_or(0)),
            reg::QUEUE_DESC_LOW => self.queue.set_desc_table_address(Some(value), None),
            reg::QUEUE_DESC_HIGH => self.queue.set_desc_table_address(None, Some(value)),
            reg::QUEUE_AVAIL_LOW => self.queue.set_avail_ring_address(Some(value), None),
            reg::QUEUE_AVAIL_HIGH => self.queue.set_avail_ring_address(None, Some(value)),
            reg::QUEUE_USED_LOW => self.queue.set_used_ring_address(Some(value), None),
            reg::QUEUE_USED_HIGH => self.queue.set_used_ring_address(None, Some(value)),
            // A queue whose rings are not all in guest memory never becomes ready.
            reg::QUEUE_READY => {
                let ready = value == 1 && self.queue_valid_if_ready();
                self.queue.set_ready(ready);
            }
            _ => {}
        }
    }

    fn queue_valid_if_ready(&mut self) -> bool {
        self.queue.set_ready(true);
        let valid = self.queue.is_valid(&self.mem);
        self.queue.set_ready(false);
        valid
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value;
        if value & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let offered = self.driver_features & !self.device_features() == 0;
            let modern = self.driver_features & (1 << feature::VERSION_1) != 0;
            if !(offered && modern) {
                value &= !status::FEATURES_OK; // the driver reads the status back and gives up
            }
        }
        self.status = value;
    }

    fn reset(&mut self) {
        self.queue.reset();
        self.device_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.interrupt_status = 0;
    }

    /// Serves every request the driver has made available, then raises the interrupt if any
    /// completed. The event loop calls it when the queue's notify eventfd fires.
    pub fn process_queue(&mut self) -> io::Result<()> {
        if self.status & status::DRIVER_OK == 0 || self.status & (status::FAILED | status::NEEDS_RESET) != 0 {
            return Ok(());
        }
        let mut completed = false;
        // Each chain moves `next_avail` on; the ring holds at most QUEUE_SIZE of them at a time.
        while let Some(chain) = self.queue.pop_descriptor_chain(&self.mem) {
            let head = chain.head_index();
            let served = block::serve(chain, &self.mem, &self.image);
            self.count(served);
            if self.queue.add_used(&self.mem, head, served.written_to_guest).is_err() {
                self.status |= status::NEEDS_RESET;
                break;
            }
            completed = true;
        }
        if completed {
            self.interrupt_status |= INT_USED_BUFFER;
            self.counts.interrupts = self.counts.interrupts.saturating_add(1);
            self.interrupt.write(1)?;
        }
        Ok(())
    }

    fn count(&mut self, served: block::Served) {
        let c = &mut self.counts;
        c.requests = c.requests.saturating_add(1);
        match served.kind {
            block::Kind::Read => c.bytes_read = c.bytes_read.saturating_add(served.data_bytes),
            block::Kind::Write => c.bytes_written = c.bytes_written.saturating_add(served.data_bytes),
            block::Kind::Flush => c.flushes = c.flushes.saturating_add(1),
            block::Kind::Other => {}
        }
        if served.status != lde_abi::virtio::BLK_S_OK {
            c.errors = c.errors.saturating_add(1);
        }
    }

    /// Makes every write the guest saw complete durable; called when the run ends, however.
    pub fn flush(&self) -> io::Result<()> {
        self.image.flush()
    }
}

/// A disk as the vCPU thread reaches it: its registers, and the eventfd that hands a queue
/// notification to the event loop.
pub struct DiskPort {
    pub device: Arc<Mutex<BlockDevice>>,
    pub notify: EventFd,
}

/// Locks a device: one thread's panic while holding it leaves registers and a queue that the
/// other threads may still read and flush, rather than a second panic.
pub fn lock(device: &Mutex<BlockDevice>) -> MutexGuard<'_, BlockDevice> {
    device.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The disk whose registers hold `addr` among `count` disks, and the offset into them.
pub fn disk_at(addr: u64, count: usize) -> Option<(usize, u64)> {
    let from_base = addr.checked_sub(lde_abi::virtio::MMIO_BASE)?;
    let index = usize::try_from(from_base / MMIO_STRIDE).ok()?;
    (index < count).then_some((index, from_base % MMIO_STRIDE))
}

/// Size announced for each device on the command line.
pub const ANNOUNCED_SIZE: u64 = MMIO_STRIDE;

const _: () = assert!(SECTOR_SIZE == 512);
