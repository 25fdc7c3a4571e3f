//! The block device driven as a guest driver would, including as a hostile one.

use std::io::Write;

use lde_abi::virtio::{
    feature, reg, status, BLK_S_IOERR, BLK_S_OK, BLK_S_UNSUPP, BLK_T_FLUSH, BLK_T_IN, BLK_T_OUT, DESC_F_NEXT,
    DESC_F_WRITE, INT_USED_BUFFER,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::image::{DiskImage, DiskSpec};
use super::BlockDevice;

const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HEADER: u64 = 0x4000;
const STATUS: u64 = 0x5000;
const DATA: u64 = 0x10000;
const MEM_SIZE: usize = 0x20_0000;

struct Rig {
    dev: BlockDevice,
    mem: GuestMemoryMmap,
    irq: EventFd,
    file: tempfile::NamedTempFile,
    next_avail: u16,
}

fn reg_write(dev: &mut BlockDevice, offset: u64, value: u32) -> bool {
    dev.write(offset, &value.to_le_bytes())
}

fn reg_read(dev: &BlockDevice, offset: u64) -> u32 {
    let mut data = [0u8; 4];
    dev.read(offset, &mut data);
    u32::from_le_bytes(data)
}

/// A device on an image of `sectors` sectors (sector n filled with byte n), set up by a driver.
fn rig(sectors: u64, read_only: bool) -> Rig {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for n in 0..sectors {
        file.write_all(&[n as u8; 512]).unwrap();
    }
    let image = DiskImage::open(&DiskSpec { path: file.path().to_path_buf(), read_only }).unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let mut dev = BlockDevice::new(image, mem.clone(), irq.try_clone().unwrap());
    reg_write(&mut dev, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    reg_write(&mut dev, reg::DRIVER_FEATURES_SEL, 1);
    reg_write(&mut dev, reg::DRIVER_FEATURES, 1 << (feature::VERSION_1 - 32));
    reg_write(&mut dev, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_ne!(reg_read(&dev, reg::STATUS) & status::FEATURES_OK, 0);
    reg_write(&mut dev, reg::QUEUE_NUM, 16);
    for (low, addr) in [(reg::QUEUE_DESC_LOW, DESC), (reg::QUEUE_AVAIL_LOW, AVAIL), (reg::QUEUE_USED_LOW, USED)] {
        reg_write(&mut dev, low, addr as u32);
    }
    reg_write(&mut dev, reg::QUEUE_READY, 1);
    assert_eq!(reg_read(&dev, reg::QUEUE_READY), 1);
    let all = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    reg_write(&mut dev, reg::STATUS, all);
    Rig { dev, mem, irq, file, next_avail: 0 }
}

impl Rig {
    fn desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(DESC + 16 * u64::from(index));
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&raw, at).unwrap();
    }

    /// Makes the three-descriptor request `kind` at `sector` with `len` data bytes available,
    /// notifies, lets the device serve it; returns the used element's length and the status byte.
    fn request(&mut self, kind: u32, sector: u64, len: u32) -> (u32, u8) {
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let data_flags = if kind == BLK_T_IN { DESC_F_WRITE } else { 0 };
        self.desc(0, HEADER, 16, DESC_F_NEXT, 1);
        self.desc(1, DATA, len, data_flags | DESC_F_NEXT, 2);
        self.desc(2, STATUS, 1, DESC_F_WRITE, 0);
        self.submit(0)
    }

    fn submit(&mut self, head: u16) -> (u32, u8) {
        let slot = u64::from(self.next_avail % 16);
        self.mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * slot)).unwrap();
        self.next_avail = self.next_avail.wrapping_add(1);
        self.mem.write_obj(self.next_avail, GuestAddress(AVAIL + 2)).unwrap();
        assert!(reg_write(&mut self.dev, reg::QUEUE_NOTIFY, 0), "a notification for queue 0");
        self.dev.process_queue().unwrap();
        assert_eq!(self.mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap(), self.next_avail);
        let len = self.mem.read_obj::<u32>(GuestAddress(USED + 4 + 8 * slot + 4)).unwrap();
        (len, self.mem.read_obj(GuestAddress(STATUS)).unwrap())
    }

    fn file_bytes(&self) -> Vec<u8> {
        std::fs::read(self.file.path()).unwrap()
    }
}

#[test]
fn identifies_as_a_modern_block_device_of_the_image_size() {
    let r = rig(3, false);
    assert_eq!(reg_read(&r.dev, reg::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(reg_read(&r.dev, reg::VERSION), 2);
    assert_eq!(reg_read(&r.dev, reg::DEVICE_ID), 2);
    let mut capacity = [0u8; 8];
    r.dev.read(reg::CONFIG, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), 3);
    let ro = rig(1, true);
    assert_ne!(reg_read(&ro.dev, reg::DEVICE_FEATURES) & (1 << feature::BLK_RO), 0);
    assert_eq!(reg_read(&r.dev, reg::DEVICE_FEATURES) & (1 << feature::BLK_RO), 0);
}

#[test]
fn a_driver_without_version_1_does_not_get_features_ok() {
    let mut r = rig(1, false);
    reg_write(&mut r.dev, reg::STATUS, 0);
    reg_write(&mut r.dev, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(reg_read(&r.dev, reg::STATUS) & status::FEATURES_OK, 0);
}

#[test]
fn a_read_lands_in_guest_memory_and_raises_the_interrupt() {
    let mut r = rig(4, false);
    assert_eq!(r.request(BLK_T_IN, 2, 1024), (1025, BLK_S_OK));
    let mut data = vec![0u8; 1024];
    r.mem.read_slice(&mut data, GuestAddress(DATA)).unwrap();
    assert!(data[..512].iter().all(|&b| b == 2) && data[512..].iter().all(|&b| b == 3));
    assert_eq!(r.irq.read().unwrap(), 1);
    assert_eq!(reg_read(&r.dev, reg::INTERRUPT_STATUS), INT_USED_BUFFER);
    reg_write(&mut r.dev, reg::INTERRUPT_ACK, INT_USED_BUFFER);
    assert_eq!(reg_read(&r.dev, reg::INTERRUPT_STATUS), 0);
    let c = r.dev.counts();
    assert_eq!((c.requests, c.bytes_read, c.errors, c.interrupts), (1, 1024, 0, 1));
}

#[test]
fn a_write_reaches_the_file_and_a_flush_succeeds() {
    let mut r = rig(4, false);
    r.mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(r.request(BLK_T_OUT, 1, 512), (1, BLK_S_OK));
    let bytes = r.file_bytes();
    assert!(bytes[512..1024].iter().all(|&b| b == 0xab));
    assert!(bytes[..512].iter().all(|&b| b == 0) && bytes[1024..1536].iter().all(|&b| b == 2));
    assert_eq!(r.request(BLK_T_FLUSH, 0, 0).1, BLK_S_OK);
}

#[test]
fn bad_requests_get_an_error_status_and_change_nothing() {
    let mut r = rig(4, true);
    let before = r.file_bytes();
    assert_eq!(r.request(BLK_T_OUT, 0, 512).1, BLK_S_IOERR, "write to a read-only disk");
    assert_eq!(r.request(BLK_T_IN, 3, 1024).1, BLK_S_IOERR, "past the end");
    assert_eq!(r.request(BLK_T_IN, u64::MAX, 512).1, BLK_S_IOERR, "sector overflow");
    assert_eq!(r.request(BLK_T_IN, u64::MAX / 512, 512).1, BLK_S_IOERR, "byte offset overflow");
    assert_eq!(r.request(BLK_T_IN, 0, 100).1, BLK_S_IOERR, "not whole sectors");
    assert_eq!(r.request(99, 0, 512).1, BLK_S_UNSUPP);
    // More than a request may move, though the image holds it: refused before any I/O.
    let mut big = rig(4096, false);
    assert_eq!(big.request(BLK_T_IN, 0, (super::block::MAX_TRANSFER + 512) as u32).1, BLK_S_IOERR);
    assert_eq!(big.request(BLK_T_IN, 0, super::block::MAX_TRANSFER as u32).1, BLK_S_OK);
    assert_eq!(r.file_bytes(), before);
    assert_eq!(r.dev.counts().errors, 6);
}

#[test]
fn chains_outside_memory_or_looping_are_answered_without_harm() {
    let mut r = rig(4, false);
    // Data outside guest memory: nothing can be written, the chain is still returned.
    r.desc(0, HEADER, 16, DESC_F_NEXT, 1);
    r.desc(1, 0xffff_ffff_0000, 512, DESC_F_WRITE | DESC_F_NEXT, 2);
    r.desc(2, STATUS, 1, DESC_F_WRITE, 0);
    assert_eq!(r.submit(0).0, 0);
    // A chain that loops back on itself.
    r.desc(0, HEADER, 16, DESC_F_NEXT, 1);
    r.desc(1, DATA, 512, DESC_F_NEXT | DESC_F_WRITE, 0);
    let _ = r.submit(0);
    // The device still serves a good request afterwards.
    assert_eq!(r.request(BLK_T_IN, 0, 512), (513, BLK_S_OK));
    // A head index past the queue's size cannot be returned: the device asks for a reset and
    // serves nothing more until it gets one.
    let slot = u64::from(r.next_avail % 16);
    r.mem.write_obj(1000u16, GuestAddress(AVAIL + 4 + 2 * slot)).unwrap();
    r.mem.write_obj(r.next_avail.wrapping_add(1), GuestAddress(AVAIL + 2)).unwrap();
    r.dev.process_queue().unwrap();
    assert_ne!(reg_read(&r.dev, reg::STATUS) & status::NEEDS_RESET, 0);
    assert_eq!(r.mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap(), r.next_avail);
}

#[test]
fn the_register_map_is_the_specifications() {
    use virtio_bindings::virtio_blk as blk;
    use virtio_bindings::virtio_mmio as mmio;
    let pairs = [
        (reg::QUEUE_NOTIFY, mmio::VIRTIO_MMIO_QUEUE_NOTIFY),
        (reg::INTERRUPT_ACK, mmio::VIRTIO_MMIO_INTERRUPT_ACK),
        (reg::STATUS, mmio::VIRTIO_MMIO_STATUS),
        (reg::QUEUE_USED_HIGH, mmio::VIRTIO_MMIO_QUEUE_USED_HIGH),
        (reg::CONFIG, mmio::VIRTIO_MMIO_CONFIG),
    ];
    for (ours, spec) in pairs {
        assert_eq!(ours, u64::from(spec));
    }
    assert_eq!(
        [BLK_T_IN, BLK_T_OUT, BLK_T_FLUSH, feature::BLK_RO, feature::BLK_FLUSH],
        [
            blk::VIRTIO_BLK_T_IN,
            blk::VIRTIO_BLK_T_OUT,
            blk::VIRTIO_BLK_T_FLUSH,
            blk::VIRTIO_BLK_F_RO,
            blk::VIRTIO_BLK_F_FLUSH
        ]
    );
    assert_eq!([u32::from(BLK_S_OK), u32::from(BLK_S_IOERR)], [blk::VIRTIO_BLK_S_OK, blk::VIRTIO_BLK_S_IOERR]);
}

#[test]
fn finds_the_disk_behind_an_address() {
    use super::disk_at;
    assert_eq!(disk_at(0xd000_0050, 1), Some((0, 0x50)));
    assert_eq!(disk_at(0xd000_1004, 2), Some((1, 4)));
    assert_eq!(disk_at(0xd000_1004, 1), None);
    assert_eq!(disk_at(0xcfff_ffff, 4), None);
}
