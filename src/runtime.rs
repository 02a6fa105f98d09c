//! Where a computation runs: the device (`cpu`, `cuda`, `cuda:N`) and the number of CPU
//! threads, one setting for rayon's global pool and candle's own pool.

use crate::error::{Error, Result};
use candle_core::Device;

/// The device named by `spec`: `cpu`, `cuda` (the first GPU) or `cuda:N`.
///
/// A build without the `cuda` feature refuses `cuda` with the command that rebuilds it.
///
/// ```
/// use metaadd::runtime::device;
/// assert!(device("cpu")?.is_cpu());
/// assert!(device("tpu").unwrap_err().to_string().contains("cpu, cuda or cuda:N"));
/// # #[cfg(not(feature = "cuda"))]
/// assert!(device("cuda:0").unwrap_err().to_string().contains("--features cuda"));
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn device(spec: &str) -> Result<Device> {
    let spec = spec.trim();
    let ordinal = match spec.to_ascii_lowercase().as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(Error::param(
                    "device",
                    format!("unknown device `{spec}`: expected cpu, cuda or cuda:N"),
                ))
            }
        },
    };
    if !cfg!(feature = "cuda") {
        return Err(Error::param(
            "device",
            format!(
                "`{spec}` needs a build with CUDA support: cargo build --release --features \
                 cuda (with the CUDA toolkit's nvcc on the PATH); this build computes on the \
                 CPU only"
            ),
        ));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| Error::param("device", format!("cannot open CUDA device {ordinal}: {e}")))
}

/// The CPU threads available to this process (its affinity mask, else the machine's cores).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The threads a computation uses unless told otherwise: `RAYON_NUM_THREADS` when it holds a
/// positive number, else [`idle_threads`]: a thread on a core that another process keeps busy
/// only waits for it (on 2 cores with one busy, a second thread made the demo 8% slower).
pub fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(idle_threads)
}

/// [`available_threads`] less the other tasks running right now (Linux: `procs_running` of
/// `/proc/stat`, this thread excluded), at least 1; elsewhere [`available_threads`].
///
/// ```
/// let n = metaadd::runtime::idle_threads();
/// assert!(n >= 1 && n <= metaadd::runtime::available_threads());
/// ```
pub fn idle_threads() -> usize {
    let available = available_threads();
    let running = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
        stat.lines()
            .find_map(|l| l.strip_prefix("procs_running "))
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    match running {
        Some(running) => available.saturating_sub(running.saturating_sub(1)).max(1),
        None => available,
    }
}

/// Computes on `threads` CPU threads: rayon's global pool and candle's pool (which read
/// `RAYON_NUM_THREADS` and `CANDLE_NUM_THREADS` when they start). Call it once, first thing,
/// before any computation: a pool that has started keeps its size, and this is then an
/// error.
///
/// ```no_run
/// metaadd::runtime::set_threads(1)?;
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn set_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(Error::param("threads", "must be at least 1"));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| {
            Error::param(
                "threads",
                format!("the thread pool has already started ({e}); set the threads first"),
            )
        })?;
    // Read by candle when its own pools start, at its first computation.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    Ok(())
}

/// `f` run on a pool of its own with `threads` threads (tests that compare bits across thread
/// counts).
#[cfg(test)]
pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    pool.expect("a test's thread pool").install(f)
}

/// The threads rayon's global pool computes with (starting it, at its default size, if no
/// one has).
pub fn threads() -> usize {
    rayon::current_num_threads()
}
