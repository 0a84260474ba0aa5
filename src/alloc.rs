//! Hands freed heap memory back to the system after a burst of connections.
//!
//! glibc's allocator keeps freed memory in per-thread arenas; after hundreds of connection
//! threads come and go the process can stay near its peak size for good. `malloc_trim(0)`
//! returns the free pages of every arena. It is called when the last connection of a burst
//! ends, which is rare and cheap compared to what it gives back.

/// Returns free heap pages to the system (a no-op where the allocator has no such call).
pub fn release_free_memory() {
    imp::trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "one call into glibc with no pointers and no preconditions")]
mod imp {
    unsafe extern "C" {
        safe fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }

    pub(super) fn trim() {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn trim() {}
}
