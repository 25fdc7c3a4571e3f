//! The GDT and the TSS.
//!
//! The selectors follow Linux's layout, which `syscall`/`sysret` need (STAR) and which PVM hosts
//! report from ring 3 whatever the GDT says (PLATFORM.md): kernel CS 0x10, kernel DS 0x18,
//! user CS32 0x23, user DS 0x2b, user CS 0x33, TSS 0x38.

use core::cell::UnsafeCell;

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, DescriptorFlags, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

/// Kernel 64-bit code segment selector.
pub const KERNEL_CODE_SELECTOR: u16 = 0x10;
/// Kernel data segment selector.
pub const KERNEL_DATA_SELECTOR: u16 = 0x18;
/// User 32-bit code segment selector (RPL 3); the base of STAR's sysret field.
pub const USER_CODE32_SELECTOR: u16 = 0x23;
/// User data segment selector (RPL 3).
pub const USER_DATA_SELECTOR: u16 = 0x2b;
/// User 64-bit code segment selector (RPL 3).
pub const USER_CODE_SELECTOR: u16 = 0x33;
/// Task state segment selector.
pub const TSS_SELECTOR: u16 = 0x38;

/// IST slot (1-based, as in the IDT) of the double-fault stack.
pub const DOUBLE_FAULT_IST: u16 = 1;
/// IST slot of the NMI stack.
pub const NMI_IST: u16 = 2;
/// IST slot of the machine-check stack.
pub const MACHINE_CHECK_IST: u16 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

/// A stack for an IST slot above its guard page (unmapped at boot); only the CPU writes it, on
/// a trap.
#[repr(C, align(4096))]
struct IstStack(UnsafeCell<[u8; GUARD_SIZE + IST_STACK_SIZE]>);

const GUARD_SIZE: usize = 4096;

// SAFETY: the kernel never reads or writes these bytes; only the CPU does, on trap delivery.
unsafe impl Sync for IstStack {}

impl IstStack {
    const fn new() -> Self {
        Self(UnsafeCell::new([0; GUARD_SIZE + IST_STACK_SIZE]))
    }

    fn top(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.0.get()) + (GUARD_SIZE + IST_STACK_SIZE) as u64
    }

    fn guard(&self) -> u64 {
        self.0.get() as u64
    }
}

#[link_section = ".bss.stacks"] // linker.ld: guard pages in the first 2 MiB
static DOUBLE_FAULT_STACK: IstStack = IstStack::new();
#[link_section = ".bss.stacks"] // linker.ld: guard pages in the first 2 MiB
static NMI_STACK: IstStack = IstStack::new();
#[link_section = ".bss.stacks"] // linker.ld: guard pages in the first 2 MiB
static MACHINE_CHECK_STACK: IstStack = IstStack::new();

/// Bytes of the I/O permission bitmap: ports 0..IOMAP_PORTS, one bit each (1 = denied).
const IOMAP_PORTS: usize = 256;

/// The TSS and its I/O permission bitmap, which must follow it in memory.
#[repr(C)]
struct TssWithIoMap {
    tss: TaskStateSegment,
    /// One bit per port (set = denied), then the terminating 0xff byte the CPU requires.
    iomap: [u8; IOMAP_PORTS / 8 + 1],
}

/// The bitmap: every port denied to ring 3 except the bench port (so `lde bench` can measure
/// a VM exit to the VMM from a process). Ports past the bitmap are denied too.
const fn iomap() -> [u8; IOMAP_PORTS / 8 + 1] {
    let mut map = [0xff; IOMAP_PORTS / 8 + 1];
    let port = lde_abi::ports::BENCH_PORT as usize;
    map[port / 8] &= !(1 << (port % 8));
    map
}

/// A TSS. The CPU reads it on every trap from ring 3 (and on port I/O from ring 3); the
/// kernel writes RSP0 when it switches processes.
struct Tss(UnsafeCell<TssWithIoMap>);

// SAFETY: each TSS belongs to one processor, which alone writes it: in `init` or `init_ap`
// (interrupts off, before it loads it) and through `percpu::PerCpu::set_kernel_stack`
// (interrupts off); otherwise only the CPU that loaded it reads it.
unsafe impl Sync for Tss {}

impl Tss {
    const fn new() -> Self {
        Tss(UnsafeCell::new(TssWithIoMap { tss: TaskStateSegment::new(), iomap: iomap() }))
    }

    /// The address of its RSP0 (the stack of a trap from ring 3), which the processor that
    /// loaded it writes through its per-CPU data when it switches processes.
    fn rsp0_address(&self) -> u64 {
        // SAFETY: only the field's address is taken (the TSS is packed: no reference is made).
        unsafe { core::ptr::addr_of!((*self.0.get()).tss.privilege_stack_table[0]) as u64 }
    }
}

static TSS: Tss = Tss::new();
static GDT: Once<GlobalDescriptorTable<10>> = Once::new();

/// Most application processors (every processor of the MP table but the bootstrap one).
pub const MAX_APS: usize = lde_kcore::mptable::MAX_CPUS - 1;

/// Each application processor's TSS and GDT (the same descriptors; its own TSS).
static AP_TSS: [Tss; MAX_APS] = [const { Tss::new() }; MAX_APS];
static AP_GDT: [Once<GlobalDescriptorTable<10>>; MAX_APS] = [const { Once::new() }; MAX_APS];

/// Builds and loads the GDT and the TSS and reloads every segment register.
pub fn init() {
    // SAFETY: interrupts are off and nothing else refers to the TSS yet.
    let tss = unsafe { &mut (*TSS.0.get()).tss };
    tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = DOUBLE_FAULT_STACK.top();
    tss.interrupt_stack_table[usize::from(NMI_IST - 1)] = NMI_STACK.top();
    tss.interrupt_stack_table[usize::from(MACHINE_CHECK_IST - 1)] = MACHINE_CHECK_STACK.top();
    load(GDT.call_once(|| build(&TSS)));
    // SAFETY: the bootstrap processor, once, interrupts off, before any per-CPU data is used.
    unsafe { super::percpu::init(0, TSS.rsp0_address()) };
}

/// Builds and loads application processor `ap`'s GDT and TSS (`ap` counts from 0 for the
/// first application processor), whose IST slots all point at `ist_top`, and reloads every
/// segment register.
///
/// # Safety
/// Called once, by processor `ap` itself, with interrupts off.
pub unsafe fn init_ap(ap: usize, ist_top: VirtAddr) {
    // SAFETY: only processor `ap` touches its TSS, and it has not loaded it yet.
    let tss = unsafe { &mut (*AP_TSS[ap].0.get()).tss };
    tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
    for slot in [DOUBLE_FAULT_IST, NMI_IST, MACHINE_CHECK_IST] {
        tss.interrupt_stack_table[usize::from(slot - 1)] = ist_top;
    }
    load(AP_GDT[ap].call_once(|| build(&AP_TSS[ap])));
    // SAFETY: processor `ap + 1` itself, once, interrupts off (the caller's contract).
    unsafe { super::percpu::init(ap + 1, AP_TSS[ap].rsp0_address()) };
}

/// The kernel's descriptors in Linux's layout, with `tss` at [`TSS_SELECTOR`].
#[inline(always)] // `init` runs once; as a call it would cost the boot emulated instructions
fn build(tss: &'static Tss) -> GlobalDescriptorTable<10> {
    let mut gdt = GlobalDescriptorTable::empty();
    gdt.append(Descriptor::UserSegment(0));
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let user_code32 = gdt.append(Descriptor::UserSegment(DescriptorFlags::USER_CODE32.bits()));
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    // SAFETY: `tss` is a static, so the references stay valid for as long as the GDT is
    // loaded; during this call (interrupts off, before the TSS is loaded) nothing writes it.
    let (tss, iomap) = unsafe { (&(*tss.0.get()).tss, &(*tss.0.get()).iomap) };
    let descriptor = Descriptor::tss_segment_with_iomap(tss, iomap).expect("the I/O bitmap follows the TSS");
    let tss = gdt.append(descriptor);
    debug_assert_eq!(kernel_code.0, KERNEL_CODE_SELECTOR);
    debug_assert_eq!(kernel_data.0, KERNEL_DATA_SELECTOR);
    debug_assert_eq!(user_code32.0, USER_CODE32_SELECTOR);
    debug_assert_eq!(user_data.0, USER_DATA_SELECTOR);
    debug_assert_eq!(user_code.0, USER_CODE_SELECTOR);
    debug_assert_eq!(tss.0, TSS_SELECTOR);
    gdt
}

/// Loads `gdt` and its TSS and reloads every segment register.
#[inline(always)] // see `build`
fn load(gdt: &'static GlobalDescriptorTable<10>) {
    gdt.load();
    // SAFETY: the selectors name the descriptors `build` appended, now loaded.
    unsafe {
        CS::set_reg(SegmentSelector::new(KERNEL_CODE_SELECTOR >> 3, PrivilegeLevel::Ring0));
        let data = SegmentSelector::new(KERNEL_DATA_SELECTOR >> 3, PrivilegeLevel::Ring0);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(SegmentSelector::new(TSS_SELECTOR >> 3, PrivilegeLevel::Ring0));
    }
}

/// The guard pages below the IST stacks, with the stacks' names.
pub fn ist_guards() -> [(&'static str, u64); 3] {
    [
        ("double-fault stack", DOUBLE_FAULT_STACK.guard()),
        ("NMI stack", NMI_STACK.guard()),
        ("machine-check stack", MACHINE_CHECK_STACK.guard()),
    ]
}
