//! One `bench result` line per measurement (the format the program's text gives).

use core::fmt::Write;

use lde_abi::histogram::bin_floor;
use lde_user::{println, Door};

use super::measure::{samples, Attempt};

/// Prints the `bench result` line of `name` from the samples of `a` (sorted here) and the
/// `fixups` the kernel made while they were taken.
pub fn report(name: &str, a: &Attempt, fixups: i64) {
    let n = a.n;
    let s = &mut samples()[..n];
    s.sort_unstable();
    if n == 0 {
        println!("bench result name={name} n=0 unresolved=below");
        return;
    }
    let mean = s.iter().sum::<u64>() / n as u64;
    let p = |q: usize| s[(n - 1) * q / 100];
    let mut line = lde_user::Printer::new(Door::Syscall);
    let _ = write!(
        line,
        "bench result name={name} n={n} k={} min={} median={} p99={} mean={mean} empty={} spread={} below={} fixups={fixups} ",
        a.k,
        s[0],
        p(50),
        p(99),
        a.empty,
        a.spread,
        a.below
    );
    if let Some(why) = a.unresolved() {
        let _ = write!(line, "unresolved={why} ");
    }
    let _ = write!(line, "hist=");
    // The samples are sorted: each bin's samples are next to each other.
    let mut i = 0;
    while i < n {
        let floor = bin_floor(s[i]);
        let count = s[i..].iter().take_while(|&&v| bin_floor(v) == floor).count();
        let _ = write!(line, "{}{floor}:{count}", if i == 0 { "" } else { "," });
        i += count;
    }
    let _ = writeln!(line);
    line.flush();
}
