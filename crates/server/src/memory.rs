//! Process memory housekeeping.

/// Hands memory the allocator holds but no longer uses back to the
/// operating system. Called once the scene is loaded: parsing and spawning
/// a large city frees hundreds of bytes per building (the scene file's
/// strings and vectors) in between the twin's live records, where glibc's
/// allocator would otherwise keep them resident for the life of the
/// process. Does nothing where the allocator offers no such call.
pub fn release_freed_memory() {
    // SAFETY: `malloc_trim` takes no pointers; it walks glibc's own free
    // lists under the allocator's locks and is safe to call from any thread
    // at any time.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
