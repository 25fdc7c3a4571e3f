//! The system call ABI: numbers, registers, error codes.
//!
//! A call puts its number in `rax` and its arguments in `rdi, rsi, rdx, r10, r8, r9`, then
//! executes `syscall` or `int 0x80`; the result comes back in `rax`. A negative result is
//! `-errno` with the numbers below (Linux's values). Both doors reach the same table.

/// Does nothing and returns 0 (for measuring the cost of the door itself).
pub const NULL: u64 = 0;
/// `write(fd, buf, len)`: fd 1 and 2 go to the serial console; returns bytes written (at most
/// [`WRITE_MAX`] a call).
pub const WRITE: u64 = 1;
/// `exit(status)`: ends the calling process; status is 0..=255.
pub const EXIT: u64 = 2;
/// `getpid()`: the caller's process id.
pub const GETPID: u64 = 3;
/// `yield()`: gives up the rest of the time slice.
pub const YIELD: u64 = 4;
/// `sleep_ms(ms)`: blocks for at least `ms` milliseconds of guest time (ms ≤ [`SLEEP_MAX_MS`]).
pub const SLEEP_MS: u64 = 5;
/// `read(fd, buf, len)`: fd 0 reads serial input, blocking until at least one byte or end of
/// input (returns 0).
pub const READ: u64 = 6;
/// `uptime_ms()`: milliseconds since the kernel started.
pub const UPTIME_MS: u64 = 7;
/// `spawn(spec, len)`: starts the program a spec names (`name arg…`, plain text); returns its
/// pid.
pub const SPAWN: u64 = 8;
/// `fixup(fault_rip, resume_rip)`: while set, an exception in the caller whose RIP is
/// `fault_rip` resumes at `resume_rip` instead of killing it (for measuring exception round
/// trips). `fixup(0, 0)` clears it. Returns how many exceptions were fixed up so far.
pub const FIXUP: u64 = 9;
/// `wait()`: blocks until one of the caller's children (the processes it spawned) ends, by exit
/// or kill, and returns its pid, in the order they ended; `-ECHILD` at once if every child has
/// already been reported (or there never was one). A caller keeps the pids of at most
/// [`WAIT_PENDING_MAX`] ended children it has not waited for: older ones are forgotten. The
/// children of a process that ends are waited for by nobody.
pub const WAIT: u64 = 10;
/// `disk_info(disk)`: the number of 512-byte sectors of disk `disk` (0 is the first `--disk`),
/// or `-ENODEV`.
pub const DISK_INFO: u64 = 11;
/// `disk_read(disk, lba, buf, sectors)`: reads `sectors` sectors from sector `lba` on into
/// `buf`, blocking until the device has written them there; returns `sectors`. `-ENODEV` (no
/// such disk), `-EINVAL` (the range runs past the end), `-EFAULT` (`buf` is not writable memory
/// of the caller's), `-EIO` (the device failed the request).
pub const DISK_READ: u64 = 12;
/// `disk_write(disk, lba, buf, sectors)`: writes `sectors` sectors from `buf` at sector `lba`,
/// blocking until the device has them; returns `sectors`. Errors as for [`DISK_READ`], and
/// `-EROFS` for a read-only disk.
pub const DISK_WRITE: u64 = 13;
/// Number of system calls; numbers at or above it are `-ENOSYS`.
pub const COUNT: u64 = 14;

/// The names of the system calls, indexed by number.
pub const NAMES: [&str; COUNT as usize] = [
    "null",
    "write",
    "exit",
    "getpid",
    "yield",
    "sleep_ms",
    "read",
    "uptime_ms",
    "spawn",
    "fixup",
    "wait",
    "disk_info",
    "disk_read",
    "disk_write",
];

/// Most bytes one `write` or `read` moves.
pub const WRITE_MAX: u64 = 4096;
/// Longest sleep one call accepts (one hour).
pub const SLEEP_MAX_MS: u64 = 3_600_000;
/// Most ended children a process keeps for `wait` (as many as the process table has slots).
pub const WAIT_PENDING_MAX: usize = 16;

/// Interrupt vector of the `int 0x80` door.
pub const INT80_VECTOR: u8 = 0x80;

/// No such program.
pub const ENOENT: i64 = 2;
/// Not a valid executable.
pub const ENOEXEC: i64 = 8;
/// The device failed the request.
pub const EIO: i64 = 5;
/// Bad file descriptor.
pub const EBADF: i64 = 9;
/// No child to wait for.
pub const ECHILD: i64 = 10;
/// Try again: the process table is full.
pub const EAGAIN: i64 = 11;
/// Out of memory.
pub const ENOMEM: i64 = 12;
/// Bad address: a pointer or length outside the caller's mapped memory.
pub const EFAULT: i64 = 14;
/// No such device: no disk with that number.
pub const ENODEV: i64 = 19;
/// Invalid argument: a value outside the call's defined range.
pub const EINVAL: i64 = 22;
/// Read-only file system: a write to a read-only disk.
pub const EROFS: i64 = 30;
/// No such system call.
pub const ENOSYS: i64 = 38;
