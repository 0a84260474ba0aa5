//! Free space on the file system holding a path (`statvfs`), for `/health` and `pincer status`.

use std::path::Path;

/// Bytes free to an unprivileged writer, and the file system's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Space {
    pub free: u64,
    pub total: u64,
}

/// Below either, the disk counts as nearly full: writes may soon fail.
pub const LOW_FREE_BYTES: u64 = 1 << 30;
pub const LOW_FREE_PERCENT: u64 = 5;

impl Space {
    pub fn nearly_full(&self) -> bool {
        self.free < LOW_FREE_BYTES
            || self.free.saturating_mul(100) < self.total.saturating_mul(LOW_FREE_PERCENT)
    }
}

#[allow(unsafe_code, reason = "statvfs writes only into the struct it is given")]
pub fn space(path: &Path) -> Option<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `s` a properly sized, writable statvfs.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    Some(Space { free: s.f_bavail as u64 * frsize, total: s.f_blocks as u64 * frsize })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_disk_has_a_size() {
        let s = space(Path::new("/")).expect("statvfs of /");
        assert!(s.total > 0 && s.free <= s.total, "{s:?}");
        assert!(space(Path::new("/no/such/dir")).is_none());
        assert!(Space { free: 100 << 20, total: 100 << 30 }.nearly_full());
        assert!(Space { free: 2 << 30, total: 100 << 30 }.nearly_full(), "2 GiB of 100 is under 5 %");
        assert!(!Space { free: 20 << 30, total: 100 << 30 }.nearly_full());
    }
}
