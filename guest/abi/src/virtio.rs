//! The virtio-mmio (version 2) block device as the kernel's driver sees it: where lde puts the
//! devices, their registers, and the block request format. The values are the virtio 1.x
//! specification's; the host's unit tests check each against `virtio-bindings`.
//!
//! A device is announced on the kernel command line as Linux's are,
//! `virtio_mmio.device=<size>@<base>:<irq>` (one word per device); the kernel probes each.

/// Guest-physical base of lde's first virtio-mmio device (in the MMIO hole, which the kernel
/// maps uncached); the next ones follow [`MMIO_STRIDE`] apart.
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Distance between two devices, and the size announced for each.
pub const MMIO_STRIDE: u64 = 0x1000;
/// I/O APIC input of lde's first device; the next ones take the following inputs.
pub const IRQ_BASE: u32 = 5;
/// Most disks a run can have (`lde run --disk`, repeatable) and the kernel keeps.
pub const MAX_DISKS: usize = 4;
/// Bytes in a sector: the unit of every block request.
pub const SECTOR_SIZE: u64 = 512;
/// Most sectors a disk may hold: the kernel keeps a sector count and an LBA in a `u32`.
pub const MAX_SECTORS: u64 = u32::MAX as u64;
/// Descriptors in the one request queue (queue 0) of lde's device.
pub const QUEUE_SIZE: u16 = 64;

/// Register offsets from a device's base (32-bit accesses).
pub mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_AVAIL_LOW: u64 = 0x090;
    pub const QUEUE_AVAIL_HIGH: u64 = 0x094;
    pub const QUEUE_USED_LOW: u64 = 0x0a0;
    pub const QUEUE_USED_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Device configuration; for a block device its first field is the capacity in sectors (u64).
    pub const CONFIG: u64 = 0x100;
}

/// [`reg::MAGIC_VALUE`]: "virt".
pub const MAGIC: u32 = 0x7472_6976;
/// [`reg::VERSION`] of a modern (virtio 1.x) device.
pub const VERSION_MODERN: u32 = 2;
/// [`reg::DEVICE_ID`] of a block device.
pub const DEVICE_ID_BLOCK: u32 = 2;

/// Device status bits ([`reg::STATUS`]).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// Feature bits.
pub mod feature {
    /// The disk is read-only.
    pub const BLK_RO: u32 = 5;
    /// The device takes flush requests.
    pub const BLK_FLUSH: u32 = 9;
    /// A virtio 1.x device (required of a version-2 device).
    pub const VERSION_1: u32 = 32;
}

/// [`reg::INTERRUPT_STATUS`] bit: the device used a buffer.
pub const INT_USED_BUFFER: u32 = 1;

/// Descriptor flags.
pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;

/// Block request types (the first field of a request's header).
pub const BLK_T_IN: u32 = 0;
pub const BLK_T_OUT: u32 = 1;
pub const BLK_T_FLUSH: u32 = 4;

/// Block request status (the last byte of a request, written by the device).
pub const BLK_S_OK: u8 = 0;
pub const BLK_S_IOERR: u8 = 1;
pub const BLK_S_UNSUPP: u8 = 2;

/// Guest-physical base of disk `index`'s registers.
pub const fn mmio_base(index: usize) -> u64 {
    MMIO_BASE + index as u64 * MMIO_STRIDE
}
