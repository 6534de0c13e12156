//! The few calls into the C library that need `unsafe`, each with its
//! safety argument, so that the rest of the crate has none of its own.

/// Asks the allocator to give free memory back to the kernel: glibc's
/// `malloc_trim(0)` returns every free page of every arena (not only the
/// top of the heap), so the resident size falls back towards its idle
/// figure after a load. Costs a walk of the allocator's free lists (about a
/// millisecond after a large load): the loop calls it rarely (see
/// `server::memory_budget`). Does nothing where the C library is not glibc.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer, touches only the
    // allocator's own state under its own locks, and is documented safe to
    // call at any time from any thread; it frees nothing that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
