//! The IDT: the 32 exception vectors and the interrupt vectors the kernel uses point at their
//! entry stubs (`entry.rs`); the gates ring 3 may raise with `int n` have DPL 3, and NMI, #DF
//! and #MC run on IST stacks.
//!
//! Every other gate stays all zero, as the static starts (filling all 256 would cost ~5,600
//! emulated instructions at every boot). A zero gate is not a valid interrupt gate: an external
//! interrupt on its vector arrives as #GP (or #NP) whose error code names the vector with the
//! IDT and EXT bits set (SDM Vol. 3, 6.13 "Error Code"), which `trap.rs` acknowledges and counts
//! as that vector; `int n` from ring 3 on it is a #GP without EXT, as for any DPL-0 gate.

use core::cell::UnsafeCell;
use core::mem::size_of;

use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

use super::vectors::{
    AP_TIMER_VECTOR, DISK_VECTOR_BASE, INT80_VECTOR, IPI_VECTOR, PF_VECTOR, RESCHED_VECTOR, SERIAL_VECTOR,
    SHOOTDOWN_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR, UD_VECTOR,
};
use super::{entry, gdt, ipi, syscall_entry};

/// One IDT gate (a 64-bit interrupt gate), as the two quadwords the CPU reads.
///
/// Hand-written rather than the `x86_64` crate's `InterruptDescriptorTable`, whose typed fields
/// keep the reserved vectors (15, 22–27, 31) out of reach and whose `new` fills all 256. Two
/// quadwords rather than six fields: a gate is then two stores (the fields cost `init` ~19
/// emulated instructions a gate where ring 0 is emulated).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    /// Offset bits 0–15 (bits 0–15), the code selector (16–31), the IST index (32–34), type
    /// 0xE = interrupt gate (40–43), DPL (45–46), present (47), offset bits 16–31 (48–63).
    low: u64,
    /// Offset bits 32–63; the upper half is reserved (zero).
    high: u64,
}

const _: () = assert!(size_of::<Gate>() == 16);

/// A gate's DPL field, in [`Gate::low`].
const DPL_SHIFT: u32 = 45;
/// A gate's IST field, in [`Gate::low`].
const IST_SHIFT: u32 = 32;

impl Gate {
    const MISSING: Gate = Gate { low: 0, high: 0 };

    /// A present interrupt gate (IF cleared on entry) into kernel code at `handler`, DPL 0, no
    /// IST stack.
    #[inline(always)]
    fn interrupt(handler: u64) -> Gate {
        Gate {
            low: (handler & 0xffff)
                | (u64::from(gdt::KERNEL_CODE_SELECTOR) << 16)
                | (0x8e00 << 32)
                | ((handler & 0xffff_0000) << 32),
            high: handler >> 32,
        }
    }
}

/// Vectors that ring 3 may raise with `int n`: #BP (`int3`), #OF (`into`) and the `int 0x80`
/// system call door.
const USER_VECTORS: [u8; 3] = [3, 4, INT80_VECTOR];

struct Idt(UnsafeCell<[Gate; 256]>);

// SAFETY: written only by `init` and `init_ap` on the bootstrap processor with interrupts off,
// before any other processor runs; afterwards only read by the CPUs.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([Gate::MISSING; 256]));

/// The interrupt vectors with a gate besides the 32 exceptions: the LAPIC timer, the UART, the
/// disks, the `int 0x80` door and the LAPIC's spurious vector.
const INTERRUPT_VECTORS: [u8; 8] = [
    TIMER_VECTOR,
    SERIAL_VECTOR,
    DISK_VECTOR_BASE,
    DISK_VECTOR_BASE + 1,
    DISK_VECTOR_BASE + 2,
    DISK_VECTOR_BASE + 3,
    INT80_VECTOR,
    SPURIOUS_VECTOR,
];
const _: () = assert!(lde_abi::virtio::MAX_DISKS == 4);

/// Points the #PF and #UD gates at entries that recognise a `syscall` and an `int 0x80` that
/// arrived as those faults (`syscall_entry::recovered_door_entries`), where the doors' self-test found
/// that they do.
///
/// # Safety
/// Interrupts are off and no other processor runs (they copy this IDT when they start).
pub unsafe fn use_recovered_doors(syscall: bool, int80: bool) {
    let (pf, ud) = syscall_entry::recovered_door_entries();
    // SAFETY: the caller's contract: nothing else touches the IDT now; each gate changes in
    // one go while no interrupt can be taken, to an entry of entry.rs.
    let gates = unsafe { &mut *IDT.0.get() };
    if syscall {
        gates[PF_VECTOR as usize] = Gate::interrupt(pf);
    }
    if int80 {
        gates[UD_VECTOR as usize] = Gate::interrupt(ud);
    }
}

/// Fills the gates of the exceptions and of [`INTERRUPT_VECTORS`] and loads the IDT.
pub fn init() {
    // SAFETY: interrupts are off and the IDT is not loaded yet: nothing else accesses it.
    let gates = unsafe { &mut *IDT.0.get() };
    for (vector, gate) in gates[..32].iter_mut().enumerate() {
        *gate = Gate::interrupt(entry::stub_address(vector));
    }
    for vector in INTERRUPT_VECTORS {
        gates[usize::from(vector)] = Gate::interrupt(entry::stub_address(usize::from(vector)));
    }
    // The exceptions to the rule above, patched rather than tested for in the loop: the
    // `int 0x80` door has an entry of its own (a system call's path), and ring 3 may use it,
    // `int3` and `into`.
    gates[usize::from(INT80_VECTOR)] = Gate::interrupt(syscall_entry::int80_entry_address());
    for vector in USER_VECTORS {
        gates[usize::from(vector)].low |= 3 << DPL_SHIFT;
    }
    gates[2].low |= u64::from(gdt::NMI_IST) << IST_SHIFT;
    gates[8].low |= u64::from(gdt::DOUBLE_FAULT_IST) << IST_SHIFT;
    gates[18].low |= u64::from(gdt::MACHINE_CHECK_IST) << IST_SHIFT;
    let pointer =
        DescriptorTablePointer { limit: (size_of::<[Gate; 256]>() - 1) as u16, base: VirtAddr::from_ptr(IDT.0.get()) };
    // SAFETY: the IDT is a static whose gates are valid entry stubs or all zero (see above).
    unsafe { lidt(&pointer) };
}

/// The application processors' IDT: every gate of [`IDT`], their timer's
/// ([`AP_TIMER_VECTOR`]), the reschedule IPI's, [`IPI_VECTOR`] to the IPI answer stub and the
/// spurious vector to a bare `iretq` (`ipi.rs`). Processor 0's IDT gets the reschedule and TLB
/// shootdown IPIs' gates too; it stays otherwise as a one-processor boot has it.
static AP_IDT: Idt = Idt(UnsafeCell::new([Gate::MISSING; 256]));

/// Fills [`AP_IDT`] from the IDT `init` filled, and adds the reschedule IPI's gate to that one.
///
/// # Safety
/// Only on the bootstrap processor, after `init`, before it starts any other processor, with
/// interrupts off.
pub unsafe fn init_ap() {
    // SAFETY: `init` is done and no other processor runs yet (the caller's contract): nothing
    // else writes `IDT` or reads `AP_IDT` meanwhile, and this processor takes no interrupt
    // while its gate changes.
    let (bsp, ap) = unsafe { (&mut *IDT.0.get(), &mut *AP_IDT.0.get()) };
    for vector in [RESCHED_VECTOR, SHOOTDOWN_VECTOR] {
        bsp[usize::from(vector)] = Gate::interrupt(entry::stub_address(usize::from(vector)));
    }
    ap.copy_from_slice(bsp);
    ap[usize::from(AP_TIMER_VECTOR)] = Gate::interrupt(entry::stub_address(usize::from(AP_TIMER_VECTOR)));
    ap[usize::from(IPI_VECTOR)] = Gate::interrupt(ipi::pong_address());
    ap[usize::from(SPURIOUS_VECTOR)] = Gate::interrupt(ipi::spurious_address());
}

/// Loads the application processors' IDT (`init_ap` filled it; the processors share it).
pub fn load_ap() {
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: VirtAddr::from_ptr(AP_IDT.0.get()),
    };
    // SAFETY: `init_ap` filled it on the bootstrap processor before it started any other;
    // nothing writes it afterwards.
    unsafe { lidt(&pointer) };
}

/// Loads an empty IDT: the next exception cannot be delivered and the CPU triple-faults.
pub fn load_empty_idt() {
    let pointer = DescriptorTablePointer { limit: 0, base: VirtAddr::zero() };
    // SAFETY: deliberately breaks trap delivery; only the triple-fault test hook calls this.
    unsafe { lidt(&pointer) };
}
