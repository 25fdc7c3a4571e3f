//! The kernel's counters: every trap by vector, each system-call door by how the call
//! actually arrived, and each system call by number.

use lde_abi::syscall::{COUNT, NAMES};
use lde_kcore::trap::mnemonic;

use crate::{print, println};

/// How a system call reached the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// `syscall` → CPL0 at LSTAR (hardware KVM, QEMU).
    SyscallArchitectural,
    /// `syscall` → #PF at LSTAR in ring 3, completed by the kernel (PVM).
    SyscallRecovered,
    /// `int 0x80` → vector 0x80 (hardware KVM, QEMU).
    Int80Architectural,
    /// `int 0x80` → #UD at the instruction, completed by the kernel (PVM).
    Int80Recovered,
}

pub struct Stats {
    pub traps: [u64; 256],
    pub syscall_arch: u64,
    pub syscall_recovered: u64,
    pub int80_arch: u64,
    pub int80_recovered: u64,
    pub calls: [u64; COUNT as usize],
    pub kills: u64,
    pub switches: u64,
}

impl Stats {
    pub const fn new() -> Stats {
        Stats {
            traps: [0; 256],
            syscall_arch: 0,
            syscall_recovered: 0,
            int80_arch: 0,
            int80_recovered: 0,
            calls: [0; COUNT as usize],
            kills: 0,
            switches: 0,
        }
    }

    pub fn count_arrival(&mut self, arrival: Arrival) {
        match arrival {
            Arrival::SyscallArchitectural => self.syscall_arch += 1,
            Arrival::SyscallRecovered => self.syscall_recovered += 1,
            Arrival::Int80Architectural => self.int80_arch += 1,
            Arrival::Int80Recovered => self.int80_recovered += 1,
        }
    }

    /// Prints the counters as `stats:` lines of `key=value` words (a fixed form tests read).
    pub fn print(&self) {
        println!(
            "stats: doors syscall.arch={} syscall.recovered={} int80.arch={} int80.recovered={}",
            self.syscall_arch, self.syscall_recovered, self.int80_arch, self.int80_recovered
        );
        print!("stats: calls");
        for (name, n) in NAMES.iter().zip(self.calls) {
            print!(" {name}={n}");
        }
        println!();
        print!("stats: traps");
        for (vector, &n) in self.traps.iter().enumerate() {
            if n != 0 {
                print!(" {}:{}={n}", vector, mnemonic(vector as u64));
            }
        }
        println!();
        println!("stats: sched kills={} switches={}", self.kills, self.switches);
    }
}
