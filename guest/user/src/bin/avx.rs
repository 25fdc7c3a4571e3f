//! Checks whether AVX state is private to a process: `avx set` and `avx check`, run together.
//!
//! lde never enables AVX (CR4.OSXSAVE stays clear, and it saves only the x87/SSE state with
//! `fxsave`), so on an x86 CPU a `vmovdqu` in ring 3 is #UD and there is nothing to leak. Some
//! hosts let ring 3 use AVX anyway (PVM: ring 3 sees the host's XCR0); the upper halves of the
//! ymm registers then pass from one process to the next. `avx set` puts a pattern in ymm15 and
//! yields N times; `avx check` reads ymm15 after each of its own N yields and says whether it
//! ever saw the pattern. Each prints one `avx:` line that `lde probe` reads; both exit 0.
#![no_std]
#![no_main]

use core::arch::asm;

use lde_user::{nr, println, yield_now, Args};

const PATTERN: [u8; 32] = [0xa5; 32];
const YIELDS: u64 = 50;

/// Runs `vmovdqu` between ymm15 and `buf` (`store`: ymm15 → buf); false if the CPU refused
/// (#UD, fixed up).
fn try_ymm15(buf: &mut [u8; 32], store: bool) -> bool {
    let ok: u64;
    // SAFETY: arms the kernel's fixup for the vmovdqu (a #UD there resumes at label 4 instead
    // of killing the process), then moves 32 bytes between ymm15 and the buffer. `syscall`
    // changes rax, rcx and r11. Nothing else in this program touches ymm15.
    unsafe {
        asm!(
            "lea rdi, [rip + 2f]",
            "lea rsi, [rip + 4f]",
            "test {store}, {store}",
            "jz 5f",
            "lea rdi, [rip + 3f]",
            "5: syscall",
            "xor {ok:e}, {ok:e}",
            "test {store}, {store}",
            "jnz 3f",
            "2: vmovdqu ymm15, [{buf}]",
            "jmp 6f",
            "3: vmovdqu [{buf}], ymm15",
            "6: mov {ok:e}, 1",
            "4:",
            buf = in(reg) buf.as_mut_ptr(),
            store = in(reg) u64::from(store),
            ok = out(reg) ok,
            inlateout("rax") nr::FIXUP => _,
            out("rdi") _, out("rsi") _, out("rcx") _, out("r11") _,
        );
    }
    lde_user::Door::Syscall.call(nr::FIXUP, [0; 6]);
    ok == 1
}

fn main(args: Args) -> i32 {
    match args.get(1) {
        Some("set") => {
            let mut buf = PATTERN;
            if !try_ymm15(&mut buf, false) {
                println!("avx: unavailable in ring 3 (#UD)");
                return 0;
            }
            for _ in 0..YIELDS {
                yield_now();
            }
            println!("avx: ymm15 set");
            0
        }
        Some("check") => {
            let mut buf = [0u8; 32];
            if !try_ymm15(&mut buf, true) {
                println!("avx: unavailable in ring 3 (#UD)");
                return 0;
            }
            let mut seen = false;
            for _ in 0..YIELDS {
                yield_now();
                try_ymm15(&mut buf, true);
                // The lower half (xmm15) is switched with the SSE state; the upper is not.
                seen |= buf[16..] == PATTERN[16..];
            }
            if seen {
                println!("avx: ymm15 held another process's value (AVX state is shared)");
            } else {
                println!("avx: ymm15 stayed private");
            }
            0
        }
        _ => {
            println!("usage: avx set|check");
            2
        }
    }
}

lde_user::entry!(main);
