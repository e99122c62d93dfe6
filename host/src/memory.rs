//! The process's heap, kept small on glibc: a leaf called by the composition root.
//!
//! glibc gives every thread that allocates an arena of its own (up to 8 per core) and
//! keeps freed memory in them; a host with a dozen threads (runtimes, the store writer,
//! the blocking pool) then holds tens of MiB it no longer uses. [`limit_arenas`] caps the
//! arenas at two before any thread starts, and [`give_back`] returns what a burst of
//! allocations (compiling the plugins at start) left free. Elsewhere both do nothing.

/// Caps glibc's malloc arenas. Call first thing, before threads exist.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free heap memory to the OS.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}
