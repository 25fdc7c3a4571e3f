//! Overwrites the kernel's code at 1 MiB; killed (#PF: supervisor page).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-kwrite", "a write to kernel memory", || {
        // SAFETY: writing a supervisor-only page from ring 3 raises #PF.
        unsafe { core::ptr::write_volatile(0x10_0000 as *mut u64, 0xcc) }
    })
}

lde_user::entry!(main);
