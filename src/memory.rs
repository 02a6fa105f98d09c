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

/// What a fit will hold at its peak, in bytes, estimated before anything is allocated.
///
/// The figures come from the shapes alone, with per-row costs measured on this code (heap peaks
/// counted by [`PeakAlloc`], f32 and f64, K = 1 to 20, `tests/memory_estimate.rs`): they err on
/// the high side, by 1.0–1.4× in that test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Both designs and targets, held for the whole fit: a design in the sparse form where
    /// [`crate::FitParams::design`] takes it, else the dense matrix.
    pub designs: usize,
    /// Building them: the designs themselves (each built in its form and dtype, the step size
    /// reading it in place), and on a GPU the step size's f64 copy of the training design.
    pub construction: usize,
    /// One outer iteration's graph: the unrolled steps the hypergradient mode keeps, the meta
    /// loss, and what the mode stores besides (β's for exact-recompute, CG vectors for implicit).
    pub graph: usize,
    /// The final solve (with `final_solve`): the training design in f64 on the host,
    /// column-major, with the targets, weights, outputs and residuals.
    pub solve: usize,
}

impl MemoryEstimate {
    /// For a fit with `params` on `n_train` training and `n_meta` meta rows of `n_features`.
    ///
    /// ```
    /// use metaadd::memory::MemoryEstimate;
    /// use metaadd::{FitParams, HypergradMode, Task};
    /// let exact = MemoryEstimate::new(&FitParams::new(Task::Regression).k(50), 100_000, 2000, 100);
    /// let recompute = MemoryEstimate::new(
    ///     &FitParams::new(Task::Regression).k(50).hypergradient(HypergradMode::ExactRecompute),
    ///     100_000, 2000, 100,
    /// );
    /// // The unrolled graph grows with K·n; exact-recompute keeps one step at a time.
    /// assert!(exact.graph > 20 * recompute.graph);
    /// assert_eq!(exact.designs, recompute.designs);
    /// ```
    pub fn new(
        params: &crate::FitParams,
        n_train: usize,
        n_meta: usize,
        n_features: usize,
    ) -> Self {
        use crate::{HypergradMode, Loss};
        let s = params.dtype.size_in_bytes();
        let columns = n_features * params.basis.n_basis;
        let outputs = params.task.outputs();
        let rows = n_train + n_meta;
        let batch = |size: Option<usize>, n: usize| size.map_or(n, |b| b.min(n));
        let (n_step, n_meta_step) = (
            batch(params.train_batch, n_train),
            batch(params.meta_batch, n_meta),
        );
        // Values kept per row by one unrolled step (losses, weights, residuals, the weight net's
        // pass and their gradients), measured: about 13 for the squared loss, 26 per class for
        // softmax.
        let per_row = match params.resolved_loss() {
            Loss::Squared | Loss::Huber { .. } => 14,
            Loss::Logistic => 20,
            Loss::Softmax => 26 * outputs,
        };
        let step = s * (n_step * per_row + 10 * columns * outputs);
        let k = params.k;
        let (kept_steps, extra) = match params.hypergradient {
            HypergradMode::Exact => (k, 0),
            HypergradMode::ExactRecompute => (1, 2 * k * columns * outputs * s),
            HypergradMode::Truncated(t) => (t, k * columns * outputs * s),
            HypergradMode::OneStep => (1, 0),
            HypergradMode::Implicit => (1, 8 * columns * outputs * s),
        };
        // The designs in the sparse form where the products read it (`crate::design`), each
        // built in its form directly.
        let sparse_rows: usize = [n_train, n_meta]
            .into_iter()
            .filter(|&n| {
                let shape = (n, n_features);
                let sparse =
                    params
                        .design
                        .resolve(params.basis, shape, params.dtype, &params.device);
                sparse.unwrap_or(false)
            })
            .sum();
        let width = params.basis.degree() + 1;
        let sparse = sparse_rows
            * n_features
            * crate::design::SplineDesign::entry_bytes(width, params.dtype);
        let dense = s * rows * (columns + outputs);
        Self {
            designs: dense - s * sparse_rows * columns + sparse,
            // Each design is built in its own form and dtype (`crate::design::Design::from_basis`)
            // and on the CPU the step size reads it in place, so building them holds the designs
            // alone; on a GPU the step size multiplies by an f64 copy of the training design
            // (and the host holds each design's values once on their way).
            // (With a sixteenth for the basis and the targets: measured 2–4% at n = 1500.)
            construction: (dense - s * sparse_rows * columns + sparse) * 17 / 16
                + if params.device.is_cpu() {
                    0
                } else {
                    8 * n_train * columns
                },
            graph: (kept_steps + 1) * step + s * n_meta_step * per_row + extra,
            solve: if params.final_solve {
                // The column-major f64 copy with a margin of an eighth, the per-row vectors,
                // and the block of rows it is built from (in f64 twice on its way).
                8 * (9 * n_train * columns / 8 + 8 * n_train * outputs)
                    + 16 * n_train.min(crate::design::SOLVER_COPY_BLOCK) * columns
            } else {
                0
            },
        }
    }

    /// The peak: building the designs, or holding them through an outer iteration or the
    /// final solve.
    pub fn peak(&self) -> usize {
        self.construction
            .max(self.designs + self.graph)
            .max(self.designs + self.solve)
    }
}

/// `bytes` as a short human figure (`1.5 GiB`, `320 MiB`, `12 KiB`).
///
/// ```
/// assert_eq!(metaadd::memory::human_bytes(3 << 29), "1.5 GiB");
/// ```
pub fn human_bytes(bytes: usize) -> String {
    let b = bytes as f64;
    match bytes {
        0..=1023 => format!("{bytes} B"),
        1024..=1_048_575 => format!("{:.0} KiB", b / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.0} MiB", b / 1_048_576.0),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
    }
}

/// Memory the system could still give this process: `MemAvailable` of `/proc/meminfo` (Linux);
/// `None` where that cannot be read.
pub fn available_bytes() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
