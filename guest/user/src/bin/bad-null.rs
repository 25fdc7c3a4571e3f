//! Dereferences a null pointer; killed (#PF: not present).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-null", "a null-pointer read", || {
        // SAFETY: page 0 is unmapped: the read raises #PF.
        let value = unsafe { core::ptr::read_volatile(core::ptr::null::<u64>()) };
        lde_user::println!("bad-null: read {value:#x}");
    })
}

lde_user::entry!(main);
