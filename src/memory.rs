//! Heap measurement: a global allocator wrapper that counts live bytes and their peak.
//!
//! A program that wants peak-memory figures (`metaadd sweep-k`, the benches, the memory test)
//! installs it once around its real allocator:
//!
//! ```
//! use metaadd::memory::{self, PeakAlloc};
//! #[global_allocator]
//! static GLOBAL: PeakAlloc<std::alloc::System> = PeakAlloc::new(std::alloc::System);
//!
//! memory::reset_peak();
//! let before = memory::current_bytes();
//! let v = vec![0u8; 1 << 20];
//! assert!(memory::peak_bytes() >= before + (1 << 20));
//! drop(v);
//! assert!(memory::is_installed());
//! ```
//!
//! Without it the counters stay at zero and [`is_installed`] is false. The counts cover Rust heap
//! allocations of the whole process (every thread), not memory a GPU driver holds.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Wraps an allocator `A` and counts what passes through it.
#[derive(Debug, Default)]
pub struct PeakAlloc<A> {
    inner: A,
}

impl<A> PeakAlloc<A> {
    /// Counts allocations made through `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

fn added(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn removed(size: usize) {
    CURRENT.fetch_sub(size, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `inner`; only counters are updated around it.
unsafe impl<A: GlobalAlloc> GlobalAlloc for PeakAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to `inner`.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            INSTALLED.store(true, Ordering::Relaxed);
            added(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.inner.dealloc(ptr, layout) };
        removed(layout.size());
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            INSTALLED.store(true, Ordering::Relaxed);
            added(layout.size());
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            removed(layout.size());
            added(new_size);
        }
        new
    }
}

/// Whether a [`PeakAlloc`] is the global allocator (it has counted an allocation).
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Heap bytes allocated and not yet freed.
pub fn current_bytes() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// The most heap bytes live at once since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the current live bytes.
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
}
