//! The virtio block driver: disks found on the command line (`virtio_mmio.device=` words, as
//! Linux finds them), one request in flight per disk, and the interrupt that ends it.
//!
//! A request, as the lecture tells it: the process's `disk_read` checks its buffer, the driver
//! puts three kinds of descriptors in the queue (the header with the sector, the process's own
//! pages by physical address, the status byte), makes them available and writes QueueNotify;
//! the process blocks and another runs. The device copies the data straight into those pages
//! (DMA) and raises its interrupt; the handler, in whatever process is running, sees the used
//! ring move, notes the status and makes the owner ready. Nothing here polls: a process waits
//! for a disk in [`State::Disk`] and only the interrupt (or the end of someone else's request)
//! wakes it.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};

use lde_abi::syscall::{EFAULT, EINVAL, EIO, ENODEV, EROFS};
use lde_abi::virtio::{
    feature, reg, status, BLK_S_OK, BLK_T_IN, BLK_T_OUT, DESC_F_NEXT, DESC_F_WRITE, DEVICE_ID_BLOCK, MAGIC, MAX_DISKS,
    MAX_SECTORS, SECTOR_SIZE, VERSION_MODERN,
};
use lde_kcore::proc::State;
use lde_kcore::virtio::layout::{AVAIL_OFFSET, DESC_OFFSET, HEADER_OFFSET, QUEUE_LEN, STATUS_OFFSET, USED_OFFSET};
use lde_kcore::virtio::{segments, MmioDevice, Segment, MAX_REQUEST_BYTES};

use crate::arch::cpu::rdtsc;
use crate::arch::vectors::DISK_VECTOR_BASE;
use crate::arch::{ioapic, lapic};
use crate::process::KERNEL;
use crate::sched::{self, block_current};
use crate::sync::Global;
use crate::{counters, println};

/// One disk the kernel drives.
struct Disk {
    base: u64,
    sectors: u64,
    read_only: bool,
    /// The page holding the queue and the request header and status (identity-mapped).
    ring: u64,
    /// The available ring's index as the driver last published it.
    avail_idx: u16,
    /// The used ring's index as the driver last saw it.
    used_seen: u16,
    /// The slot of the process whose request is in flight.
    owner: Option<usize>,
    /// The status of the finished request, until its owner takes it.
    done: Option<u8>,
}

static DISKS: Global<[Option<Disk>; MAX_DISKS]> = Global::new([const { None }; MAX_DISKS]);

fn read32(addr: u64) -> u32 {
    // SAFETY: `addr` is a register of a device the command line announced in the MMIO hole,
    // which the boot page tables map uncached, supervisor-only; reading has no side effect the
    // driver does not expect.
    unsafe { read_volatile(addr as *const u32) }
}

fn write32(addr: u64, value: u32) {
    // SAFETY: as in `read32`.
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// Finds, sets up and routes the interrupt of each disk the command line announces (`words`
/// are the values of its `virtio_mmio.device` words, in order: disk 0 first). Prints one line
/// per disk, or why it is not used.
#[inline(never)] // off the hot paths of every trap and system call
pub fn probe(words: &[&str]) {
    for (index, word) in words.iter().enumerate().take(MAX_DISKS) {
        let Some(dev) = lde_kcore::virtio::parse_mmio_device(word) else {
            println!("kernel: disk {index}: cannot read virtio_mmio.device={word}");
            continue;
        };
        match init(&dev) {
            Ok(disk) => {
                let ro = if disk.read_only { ", read-only" } else { "" };
                println!(
                    "kernel: disk {index}: {} sectors{ro} (virtio-mmio at {:#x}, irq {})",
                    disk.sectors, dev.base, dev.irq
                );
                ioapic::route(dev.irq, DISK_VECTOR_BASE + index as u8);
                DISKS.with(|d| d[index] = Some(disk));
            }
            Err(why) => println!("kernel: disk {index}: not used: {why}"),
        }
    }
}

/// The virtio 1.x initialization sequence for a block device at `dev`.
fn init(dev: &MmioDevice) -> Result<Disk, &'static str> {
    if dev.base < 0xc000_0000 || dev.base.saturating_add(0x200) > 0xfec0_0000 || dev.irq >= ioapic::INPUTS {
        return Err("its registers or its irq lie outside what the kernel maps and routes");
    }
    let r = |off| read32(dev.base + off);
    let w = |off, v| write32(dev.base + off, v);
    if r(reg::MAGIC_VALUE) != MAGIC || r(reg::VERSION) != VERSION_MODERN || r(reg::DEVICE_ID) != DEVICE_ID_BLOCK {
        return Err("not a modern virtio block device");
    }
    w(reg::STATUS, 0);
    w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    w(reg::DEVICE_FEATURES_SEL, 0);
    let low = r(reg::DEVICE_FEATURES);
    w(reg::DEVICE_FEATURES_SEL, 1);
    let high = r(reg::DEVICE_FEATURES);
    if high & (1 << (feature::VERSION_1 - 32)) == 0 {
        return Err("the device does not offer VIRTIO_F_VERSION_1");
    }
    let read_only = low & (1 << feature::BLK_RO) != 0;
    w(reg::DRIVER_FEATURES_SEL, 0);
    w(reg::DRIVER_FEATURES, low & (1 << feature::BLK_RO));
    w(reg::DRIVER_FEATURES_SEL, 1);
    w(reg::DRIVER_FEATURES, 1 << (feature::VERSION_1 - 32));
    w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    if r(reg::STATUS) & status::FEATURES_OK == 0 {
        return Err("the device refused the features");
    }
    let sectors = capacity(dev.base);
    if sectors == 0 || sectors > MAX_SECTORS {
        w(reg::STATUS, status::FAILED);
        return Err("its capacity is 0 or more sectors than the kernel counts");
    }
    w(reg::QUEUE_SEL, 0);
    if r(reg::QUEUE_READY) != 0 || r(reg::QUEUE_NUM_MAX) < u32::from(QUEUE_LEN) {
        w(reg::STATUS, status::FAILED);
        return Err("its queue 0 is in use or too small");
    }
    let Some(ring) = KERNEL.with(|k| k.frames.alloc_zeroed()).map(|f| f.into_addr()) else {
        w(reg::STATUS, status::FAILED);
        return Err("no memory for its queue");
    };
    w(reg::QUEUE_NUM, u32::from(QUEUE_LEN));
    for (low, addr) in
        [(reg::QUEUE_DESC_LOW, DESC_OFFSET), (reg::QUEUE_AVAIL_LOW, AVAIL_OFFSET), (reg::QUEUE_USED_LOW, USED_OFFSET)]
    {
        w(low, (ring + addr) as u32);
        w(low + 4, ((ring + addr) >> 32) as u32);
    }
    w(reg::QUEUE_READY, 1);
    w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK);
    Ok(Disk { base: dev.base, sectors, read_only, ring, avail_idx: 0, used_seen: 0, owner: None, done: None })
}

/// The capacity in sectors, read as two halves until the configuration generation holds still.
fn capacity(base: u64) -> u64 {
    for _ in 0..4 {
        let generation = read32(base + reg::CONFIG_GENERATION);
        let low = read32(base + reg::CONFIG);
        let high = read32(base + reg::CONFIG + 4);
        if read32(base + reg::CONFIG_GENERATION) == generation {
            return u64::from(high) << 32 | u64::from(low);
        }
    }
    0
}

/// `disk_info(disk)`: the sector count.
#[inline(never)] // off the hot paths of every trap and system call
pub fn info(disk: u64) -> i64 {
    DISKS.with(|d| match usize::try_from(disk).ok().and_then(|i| d.get(i)).and_then(Option::as_ref) {
        Some(disk) => disk.sectors as i64,
        None => -ENODEV,
    })
}

/// `disk_read`/`disk_write(disk, lba, buf, sectors)` for the running process: checks the call,
/// then moves the data in requests of at most [`MAX_REQUEST_BYTES`], blocking on each. Returns
/// the sectors moved or a negative errno. A system call (see `syscall::dispatch`): it may block.
#[inline(never)] // off the hot paths of every trap and system call
pub fn transfer(disk: u64, lba: u64, buf: u64, sectors: u64, write: bool) -> i64 {
    let Some(index) = usize::try_from(disk).ok().filter(|&i| i < MAX_DISKS) else { return -ENODEV };
    let Some((disk_sectors, read_only)) = DISKS.with(|d| d[index].as_ref().map(|d| (d.sectors, d.read_only))) else {
        return -ENODEV;
    };
    if lba.checked_add(sectors).is_none_or(|end| end > disk_sectors) {
        return -EINVAL;
    }
    if write && read_only {
        return -EROFS;
    }
    let Some(bytes) = sectors.checked_mul(SECTOR_SIZE) else { return -EINVAL };
    // The device writes the process's pages for a read: they must be writable by it.
    if let Err(e) = crate::usermem::user_pages_ok(buf, bytes, !write) {
        return e;
    }
    let slot = crate::process::current();
    let mut done = 0;
    while done < bytes {
        let len = (bytes - done).min(MAX_REQUEST_BYTES);
        let sector = lba + done / SECTOR_SIZE;
        if let Err(e) = request(slot, index, sector, buf + done, len, write) {
            return e;
        }
        done += len;
    }
    sectors as i64
}

/// One request: waits for the disk to be free, submits, blocks until the interrupt ends it.
fn request(slot: usize, index: usize, sector: u64, buf: u64, len: u64, write: bool) -> Result<(), i64> {
    let translate =
        |page| KERNEL.with(|k| k.procs.get(slot).machine.space.as_ref()?.translate(page).map(|(phys, _)| phys));
    let Some((segs, count)) = segments(buf, len, translate) else { return Err(-EFAULT) };
    loop {
        let started = DISKS.with(|d| {
            let disk = d[index].as_mut().expect("transfer checked the disk exists");
            disk.owner.is_none() && {
                submit(disk, slot, sector, &segs[..count], write);
                true
            }
        });
        if started {
            break;
        }
        // SAFETY: a system call on the process's kernel stack, interrupts off, no borrow held.
        unsafe { block_current(State::Disk) };
    }
    let submitted = rdtsc();
    loop {
        let finished = DISKS.with(|d| {
            let disk = d[index].as_mut().expect("the disk stays");
            let status = disk.done.take()?;
            disk.owner = None;
            Some(status)
        });
        match finished {
            // The disk is free again: whoever waits for it may try.
            Some(status) => {
                let waited = rdtsc() - submitted;
                counters::update(|page| counters::disk_done(page, slot, len, write, waited));
                KERNEL.with(sched::wake_disk_waiters);
                return if status == BLK_S_OK { Ok(()) } else { Err(-EIO) };
            }
            // SAFETY: as above; the interrupt cannot come between the check and the block,
            // since interrupts stay off in the kernel until the switch.
            None => unsafe { block_current(State::Disk) },
        }
    }
}

/// Puts one request in the queue and tells the device: the header, the data segments, the
/// status byte, chained from descriptor 0.
fn submit(disk: &mut Disk, slot: usize, sector: u64, segs: &[Segment], write: bool) {
    let ring = disk.ring;
    let kind = if write { BLK_T_OUT } else { BLK_T_IN };
    // SAFETY: every write in this function goes to the ring page, which belongs to this disk
    // alone (identity-mapped kernel RAM); the device reads it only after the available index
    // moves, at the end.
    unsafe {
        write_volatile((ring + HEADER_OFFSET) as *mut u32, kind);
        write_volatile((ring + HEADER_OFFSET + 4) as *mut u32, 0);
        write_volatile((ring + HEADER_OFFSET + 8) as *mut u64, sector);
        write_volatile((ring + STATUS_OFFSET) as *mut u8, 0xff);
    }
    let data_flags = if write { DESC_F_NEXT } else { DESC_F_NEXT | DESC_F_WRITE };
    let mut index = 0u16;
    let mut put = |addr: u64, len: u32, flags: u16| {
        let desc = ring + DESC_OFFSET + 16 * u64::from(index);
        // SAFETY: as above; `index` < QUEUE_LEN (a request has at most MAX_SEGMENTS + 2).
        unsafe {
            write_volatile(desc as *mut u64, addr);
            write_volatile((desc + 8) as *mut u32, len);
            write_volatile((desc + 12) as *mut u16, flags);
            write_volatile((desc + 14) as *mut u16, index + 1);
        }
        index += 1;
    };
    put(ring + HEADER_OFFSET, 16, DESC_F_NEXT);
    for seg in segs {
        put(seg.phys, seg.len, data_flags);
    }
    put(ring + STATUS_OFFSET, 1, DESC_F_WRITE);
    let slot_in_ring = u64::from(disk.avail_idx % QUEUE_LEN);
    disk.avail_idx = disk.avail_idx.wrapping_add(1);
    disk.owner = Some(slot);
    // SAFETY: as above. The fences keep the descriptors before the index, the index before
    // the notification (x86 keeps stores in order; the compiler must too).
    unsafe {
        write_volatile((ring + AVAIL_OFFSET + 4 + 2 * slot_in_ring) as *mut u16, 0);
        compiler_fence(Ordering::SeqCst);
        write_volatile((ring + AVAIL_OFFSET + 2) as *mut u16, disk.avail_idx);
    }
    compiler_fence(Ordering::SeqCst);
    write32(disk.base + reg::QUEUE_NOTIFY, 0);
}

/// The interrupt of disk `index`: acknowledge it, and if the used ring moved, the request in
/// flight is done: note its status and make its owner ready.
#[inline(never)] // off the hot paths of every trap and system call
pub fn interrupt(index: usize) {
    let woke = DISKS.with(|d| {
        let Some(disk) = d.get_mut(index).and_then(Option::as_mut) else { return false };
        let pending = read32(disk.base + reg::INTERRUPT_STATUS);
        write32(disk.base + reg::INTERRUPT_ACK, pending);
        // SAFETY: the used ring's index in this disk's ring page (identity-mapped RAM).
        let used = unsafe { read_volatile((disk.ring + USED_OFFSET + 2) as *const u16) };
        compiler_fence(Ordering::SeqCst);
        // One request is in flight at a time; a device that moves the index further, or
        // without one, ends nothing more.
        if used == disk.used_seen || disk.owner.is_none() {
            return false;
        }
        disk.used_seen = used;
        // SAFETY: as above.
        disk.done = Some(unsafe { read_volatile((disk.ring + STATUS_OFFSET) as *const u8) });
        true
    });
    counters::update(|page| page.disk_interrupts += 1);
    if woke {
        KERNEL.with(sched::wake_disk_waiters);
    }
    lapic::eoi();
}
