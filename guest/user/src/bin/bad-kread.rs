//! Reads the kernel's code at 1 MiB; killed (#PF: supervisor page).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-kread", "a read of kernel memory", || {
        // SAFETY: reading a supervisor-only page from ring 3 raises #PF.
        let value = unsafe { core::ptr::read_volatile(0x10_0000 as *const u64) };
        lde_user::println!("bad-kread: read {value:#x}");
    })
}

lde_user::entry!(main);
