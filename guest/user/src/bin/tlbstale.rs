//! `tlbstale [ROUNDS]` (default 40) would read a stale translation if the kernel freed an address
//! space without a TLB shootdown. It starts `tlbstale child` ROUNDS times, one after another. Each
//! child checks that a page of initialized data holds what its image says, overwrites it with
//! its pid, sleeps a millisecond (so that it may resume on the other processor) and reads it
//! again. With several processors an idle one keeps the page tables of the last process it ran;
//! the next child's page tables are the same frames (freed last, taken first), so a processor
//! that was not told to drop them would skip the CR3 write (it already "holds" them) and keep
//! the dead child's translations: the new child would read its predecessor's pid where its image
//! has the pattern. A child that does says so and exits 1; otherwise the parent prints
//! `tlbstale: N rounds, no stale translation`. (Without shootdowns the guest usually dies first:
//! the idle processor's page tables are zeroed for the next child while it still uses them, and
//! its next fetch of kernel text triple-faults; tests/smp.rs.)
#![no_std]
#![no_main]

use core::cell::UnsafeCell;

use lde_user::{getpid, println, sleep_ms, spawn, wait, Args};

const WORDS: usize = 512;

/// One page of initialized data: the loader copies it from the image into a frame of the
/// process's own.
#[repr(C, align(4096))]
struct Page(UnsafeCell<[u64; WORDS]>);

// SAFETY: one thread; the page is only accessed through volatile reads and writes below.
unsafe impl Sync for Page {}

/// What the image holds at word `i`.
const fn pattern(i: usize) -> u64 {
    0x7462_7374_0000_0000 | (i as u64 * 0x9e37)
}

static PAGE: Page = Page(UnsafeCell::new({
    let mut words = [0u64; WORDS];
    let mut i = 0;
    while i < WORDS {
        words[i] = pattern(i);
        i += 1;
    }
    words
}));

fn word(i: usize) -> *mut u64 {
    // SAFETY: `i < WORDS`: inside the page.
    unsafe { (PAGE.0.get() as *mut u64).add(i) }
}

/// The first word that does not hold `want(i)`, with what it holds.
fn mismatch(want: impl Fn(usize) -> u64) -> Option<(usize, u64)> {
    // SAFETY: `word` stays inside the page; volatile, so every read goes through the TLB.
    (0..WORDS).map(|i| (i, unsafe { word(i).read_volatile() })).find(|&(i, v)| v != want(i))
}

fn child() -> i32 {
    let pid = getpid() as u64;
    if let Some((i, v)) = mismatch(pattern) {
        println!(
            "tlbstale: pid {pid} read {v:#x} at word {i} where its image has {:#x}: a stale translation",
            pattern(i)
        );
        return 1;
    }
    for i in 0..WORDS {
        // SAFETY: as in `mismatch`.
        unsafe { word(i).write_volatile(pid) };
    }
    sleep_ms(1);
    if let Some((i, v)) = mismatch(|_| pid) {
        println!("tlbstale: pid {pid} read {v:#x} at word {i} after writing its pid: a stale translation");
        return 1;
    }
    0
}

fn main(args: Args) -> i32 {
    if args.get(1) == Some("child") {
        return child();
    }
    let Some(rounds) = args.number(1, 40) else {
        println!("usage: tlbstale [ROUNDS]");
        return 2;
    };
    for round in 0..rounds {
        let pid = spawn("tlbstale child");
        if pid < 0 {
            println!("tlbstale: round {round}: spawn failed ({pid})");
            return 1;
        }
        wait();
    }
    println!("tlbstale: {rounds} rounds, no stale translation");
    0
}

lde_user::entry!(main);
