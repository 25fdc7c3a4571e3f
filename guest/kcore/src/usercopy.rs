//! Checking user pointers: a (pointer, length) pair must lie wholly inside user space without
//! overflowing; the kernel then checks each page is mapped for the user.

use lde_abi::syscall::EFAULT;
use lde_abi::user::{USER_BASE, USER_END};

/// The pages a user range touches, if it lies in user space: `(first_page, end)` with `end`
/// exclusive and not page-aligned. Errors are `-EFAULT`.
pub fn user_range(ptr: u64, len: u64) -> Result<(u64, u64), i64> {
    let end = ptr.checked_add(len).ok_or(-EFAULT)?;
    if ptr < USER_BASE || end > USER_END {
        return Err(-EFAULT);
    }
    Ok((ptr & !0xfff, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_user_space_passes() {
        assert_eq!(user_range(USER_BASE + 0x10, 0x20), Ok((USER_BASE, USER_BASE + 0x30)));
        assert_eq!(user_range(USER_BASE, 0), Ok((USER_BASE, USER_BASE)));
        assert_eq!(user_range(0x10_0000, 8), Err(-EFAULT), "kernel memory");
        assert_eq!(user_range(0, 1), Err(-EFAULT), "null");
        assert_eq!(user_range(USER_END - 4, 8), Err(-EFAULT), "past the end");
        assert_eq!(user_range(0xffff_8000_0000_0000, 8), Err(-EFAULT), "upper half");
        assert_eq!(user_range(0x8000_0000_0000, 8), Err(-EFAULT), "non-canonical");
        assert_eq!(user_range(USER_BASE, u64::MAX), Err(-EFAULT), "overflow");
    }
}
