//! Exit codes: what the guest reports through the shutdown port, and what the VMM adds of its own.
//!
//! The guest's codes are passed through as the `lde` process's exit status. The VMM's own
//! failures use codes the guest never writes, so a script can tell the two apart.

/// Every process ended with status 0 (or there was nothing to run) and the kernel shut down.
pub const SUCCESS: u32 = 0;
/// The kernel shut down normally, but at least one process failed or was killed.
pub const PROCESS_FAILED: u32 = 1;
/// The kernel panicked; its panic message is the last serial output.
pub const KERNEL_PANIC: u32 = 3;
/// The kernel could not boot: the boot information it was given is unusable.
pub const BAD_BOOT: u32 = 4;
/// Largest exit code a guest may write; anything above is a protocol error.
pub const GUEST_MAX: u32 = 63;

/// VMM: the command line was wrong (clap's convention).
pub const USAGE: u8 = 2;
/// VMM: the guest crashed (triple fault, KVM internal error, unexpected exit, bad exit code).
pub const GUEST_CRASHED: u8 = 70;
/// VMM: KVM is missing, inaccessible or lacks a capability lde needs.
pub const KVM_UNAVAILABLE: u8 = 71;
/// VMM: a kernel or program file could not be read or is not a valid image.
pub const BAD_IMAGE: u8 = 72;
/// VMM: any other failure of the VMM itself (memory, ioctl, thread, terminal).
pub const VMM_FAILED: u8 = 74;
/// VMM: `--timeout` expired before the guest shut down.
pub const TIMEOUT: u8 = 124;
/// VMM: GDB's `kill` command stopped the guest (`lde run --gdb`); 128 + SIGKILL, as a shell
/// reports a killed process.
pub const GDB_KILLED: u8 = 137;
/// VMM: stopped by a signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT, or any other whose default
/// would end the process).
pub const INTERRUPTED: u8 = 130;
/// VMM: the reader of lde's stdout or stderr went away (a closed pipe); the status a shell
/// reports for a process killed by SIGPIPE.
pub const OUTPUT_CLOSED: u8 = 141;
