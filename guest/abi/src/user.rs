//! The user address space, as the kernel builds it and user programs are linked for.
//!
//! The kernel owns PML4 slot 0 (the first 512 GiB, supervisor-only) of every address space;
//! user programs live above it, in the lower half only.

/// Lowest user address: programs are linked here (PML4 slot 1).
pub const USER_BASE: u64 = 0x0000_0080_0000_0000;
/// End (exclusive) of the user half: the top of the lower canonical half, minus one page.
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;
/// Top of the user stack (exclusive); the System V start frame is built just below.
pub const USER_STACK_TOP: u64 = USER_END;
/// Size of the user stack, mapped when the process starts.
pub const USER_STACK_SIZE: u64 = 64 * 1024;
/// The unmapped guard page below the stack: touching it is a stack overflow.
pub const USER_STACK_GUARD: u64 = USER_STACK_TOP - USER_STACK_SIZE - 4096;

/// Most arguments a program gets (argv[0] included).
pub const ARGS_MAX: usize = 16;
/// Most bytes of argument strings (with their NULs).
pub const ARGS_BYTES_MAX: usize = 1024;

/// Auxiliary-vector key (beyond Linux's) whose value is the TSC frequency in Hz, so a program can
/// measure time with `rdtsc` without a system call.
pub const AT_LDE_TSC_HZ: u64 = 0x4c44_0001;
/// Auxiliary-vector key of the end-of-vector marker.
pub const AT_NULL: u64 = 0;
