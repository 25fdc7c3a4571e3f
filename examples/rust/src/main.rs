//! A user program for lde in Rust, without the standard library: lde's system calls are made
//! with the `syscall` instruction (number in rax, arguments in rdi, rsi, rdx; see the README).
//!
//! Build: `rustup target add x86_64-unknown-none; cargo build --release` (the flags are in
//! .cargo/config.toml). Run: `lde run --program target/x86_64-unknown-none/release/hello-rust`.
#![no_std]
#![no_main]

const SYS_WRITE: u64 = 1;
const SYS_EXIT: u64 = 2;

fn syscall3(number: u64, a: u64, b: u64, c: u64) -> i64 {
    let result: i64;
    // SAFETY: lde's system-call ABI: rcx and r11 are clobbered by `syscall`, rax returns.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") number as i64 => result, in("rdi") a, in("rsi") b,
                         in("rdx") c, out("rcx") _, out("r11") _, options(nostack));
    }
    result
}

fn print(text: &str) {
    syscall3(SYS_WRITE, 1, text.as_ptr() as u64, text.len() as u64);
}

/// Where the kernel starts the process (argc, argv and envp are on the stack, System V).
#[no_mangle]
pub extern "C" fn _start() -> ! {
    print("hello from Rust in ring 3\n");
    syscall3(SYS_EXIT, 0, 0, 0);
    unreachable!("exit does not return")
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    syscall3(SYS_EXIT, 101, 0, 0);
    loop {}
}
