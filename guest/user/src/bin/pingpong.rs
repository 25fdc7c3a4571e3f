//! Starts a partner and yields to it N times (default 100): N round trips, 2N voluntary switches.
#![no_std]
#![no_main]

use lde_user::{getpid, println, spawn, yield_now, Args};

fn main(args: Args) -> i32 {
    let Some(n) = args.number(1, 100) else {
        println!("usage: pingpong [N]");
        return 2;
    };
    let partner = args.get(2) == Some("partner");
    if !partner {
        let mut spec = [0u8; 64];
        let text = format_spec(&mut spec, n);
        let pid = spawn(text);
        if pid < 0 {
            println!("pingpong: cannot start the partner: {pid}");
            return 1;
        }
    }
    for _ in 0..n {
        yield_now();
    }
    println!("pingpong: pid {} yielded {n} times{}", getpid(), if partner { " (partner)" } else { "" });
    0
}

/// "pingpong N partner" in `buf`.
fn format_spec(buf: &mut [u8; 64], n: u64) -> &str {
    use core::fmt::Write;
    struct W<'a>(&'a mut [u8; 64], usize);
    impl Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0.get_mut(self.1..end).ok_or(core::fmt::Error)?.copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut w = W(buf, 0);
    let _ = write!(w, "pingpong {n} partner");
    let len = w.1;
    core::str::from_utf8(&buf[..len]).unwrap_or("pingpong")
}

lde_user::entry!(main);
