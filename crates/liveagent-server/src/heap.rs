//! The process allocator's own figures, for `GET /debug/stats` and the churn benchmark.
//!
//! Resident memory (RSS) alone cannot tell memory the server still holds from memory it has
//! freed but the allocator keeps mapped. On glibc, `mallinfo2()` says both: the bytes in use
//! by live allocations and the freed bytes the allocator still holds in its arenas. Other
//! targets report nothing.

use serde::Serialize;

/// The allocator's view of the heap (glibc `mallinfo2`, summed over every arena).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct HeapStats {
    /// Bytes in live allocations (arenas and large mmapped blocks together).
    pub in_use_bytes: u64,
    /// Freed bytes the allocator keeps in its arenas (reusable, still counted by RSS where
    /// touched).
    pub free_bytes: u64,
    /// Bytes in blocks mmapped on their own (large allocations; unmapped when freed).
    pub mmapped_bytes: u64,
    /// Bytes the arenas hold from the system (in use and free).
    pub arena_bytes: u64,
}

/// The current figures, or `None` where the allocator does not report them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn heap_stats() -> Option<HeapStats> {
    // SAFETY: mallinfo2 only reads the allocator's counters (taking each arena's lock).
    let m = unsafe { libc::mallinfo2() };
    Some(HeapStats {
        in_use_bytes: (m.uordblks + m.hblkhd) as u64,
        free_bytes: m.fordblks as u64,
        mmapped_bytes: m.hblkhd as u64,
        arena_bytes: m.arena as u64,
    })
}

/// The current figures, or `None` where the allocator does not report them.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_stats() -> Option<HeapStats> {
    None
}
