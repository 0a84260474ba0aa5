//! Keeps the host's heap from staying at its peak after a burst of connections.
//!
//! glibc's allocator keeps freed memory in per-thread arenas; after hundreds of connection
//! threads come and go the process can stay near its peak size for good. `malloc_trim(0)`
//! returns the free pages of every arena. It is called when the last connection of a burst
//! ends, which is rare and cheap compared to what it gives back. It cannot return a page that
//! still holds one live allocation, and each arena fragments on its own: by default glibc opens
//! up to eight arenas a core when threads contend (under load, a burst of connection threads
//! spreads over a dozen, measured), so the host keeps two ([`ARENAS_MAX`]).

/// Heap arenas the host's threads share (glibc's default is eight a core).
pub const ARENAS_MAX: i32 = 2;

/// Returns free heap pages to the system (a no-op where the allocator has no such call).
pub fn release_free_memory() {
    imp::trim();
}

/// Caps the allocator's arenas at [`ARENAS_MAX`]; call before any thread starts.
pub fn limit_arenas() {
    imp::limit_arenas();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "calls into glibc with no pointers and no preconditions")]
mod imp {
    unsafe extern "C" {
        safe fn malloc_trim(pad: usize) -> std::ffi::c_int;
        safe fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }

    /// glibc's `M_ARENA_MAX`.
    const M_ARENA_MAX: std::ffi::c_int = -8;

    pub(super) fn trim() {
        malloc_trim(0);
    }

    pub(super) fn limit_arenas() {
        mallopt(M_ARENA_MAX, super::ARENAS_MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn trim() {}
    pub(super) fn limit_arenas() {}
}
