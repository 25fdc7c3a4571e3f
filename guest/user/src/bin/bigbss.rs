//! `bigbss [MIB]`: a program with a 64 MiB BSS that touches its first MIB MiB (default 0) and
//! checks that every byte it touched read as zero.
//!
//! The kernel maps BSS pages when they are first touched, so starting this program costs no
//! more than starting `hello`, and touching more than the free memory kills it with #PF (out of
//! memory) while the kernel carries on.
#![no_std]
#![no_main]

use lde_user::{println, Args};

const BSS_MIB: usize = 64;
static mut BIG: [u8; BSS_MIB << 20] = [0; BSS_MIB << 20];

fn main(args: Args) -> i32 {
    let Some(mib) = args.number(1, 0).filter(|&m| m as usize <= BSS_MIB) else {
        println!("usage: bigbss [MIB] (at most {BSS_MIB})");
        return 2;
    };
    let len = (mib as usize) << 20;
    // SAFETY: the only access to BIG, from this one thread.
    let big = unsafe { &mut *core::ptr::addr_of_mut!(BIG) };
    let mut nonzero = 0usize;
    for page in big[..len].chunks_mut(4096) {
        nonzero += page.iter().filter(|&&b| b != 0).count();
        page[0] = 0xff; // dirty it: the frame must be zeroed again before anyone else gets it
    }
    println!("bigbss: touched {mib} MiB of {BSS_MIB}, {nonzero} bytes not zero");
    i32::from(nonzero != 0)
}

lde_user::entry!(main);
