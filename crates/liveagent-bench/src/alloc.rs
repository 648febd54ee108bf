//! A counting wrapper around the system allocator, installed as the bench binary's
//! `#[global_allocator]`: it tells the bytes live allocations hold from the resident memory
//! (RSS) the allocator keeps mapped, so that a rising RSS can be told apart as a leak (live
//! bytes rise too) or as allocator retention (they do not).
//!
//! Counting is off until [`enable`] is called (only the soak does), so the other benchmarks'
//! CPU figures are not changed by it; once on, each allocation and free costs one relaxed
//! atomic add. Bytes allocated before [`enable`] and freed after it make the figure slightly
//! low, never high: read it as a curve, not as an absolute.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The system allocator, counting live bytes when enabled.
pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicI64 = AtomicI64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Starts counting.
pub fn enable() {
    ON.store(true, Ordering::SeqCst);
}

/// Bytes held by live allocations made since [`enable`] (net of frees).
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// Allocations made since [`enable`].
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

// SAFETY: every call is forwarded to `System` unchanged; the counters have no effect on it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && ON.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && ON.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if ON.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && ON.load(Ordering::Relaxed) {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

/// glibc's own view of the heap (`mallinfo2`): bytes in use and freed bytes it keeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct Glibc {
    /// Bytes in live allocations (arenas and mmapped blocks).
    pub in_use: u64,
    /// Freed bytes kept in the arenas.
    pub free: u64,
}

/// The figures, or zeros where the allocator is not glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn glibc() -> Glibc {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    Glibc {
        in_use: (m.uordblks + m.hblkhd) as u64,
        free: m.fordblks as u64,
    }
}

/// The figures, or zeros where the allocator is not glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn glibc() -> Glibc {
    Glibc::default()
}

/// Gives freed memory back to the system (`malloc_trim(0)`); false where not glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim only walks the allocator's free lists.
    unsafe { libc::malloc_trim(0) };
    true
}

/// Gives freed memory back to the system (`malloc_trim(0)`); false where not glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}
