//! Peak memory must not grow across outer iterations: a few hundred iterations per mode, heap
//! counted by `metaadd::memory::PeakAlloc` (the only test in this binary, so no other thread
//! allocates meanwhile).

use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::memory::{self, PeakAlloc};
use metaadd::{FitParams, HypergradMode, Task, Trainer};

#[global_allocator]
static GLOBAL: PeakAlloc<mimalloc::MiMalloc> = PeakAlloc::new(mimalloc::MiMalloc);

const ITERATIONS: usize = 300;
const WARM_UP: usize = 20;

#[test]
fn peak_memory_stays_flat_over_hundreds_of_outer_iterations() {
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(200)
        .n_features(10)
        .generate(3)
        .unwrap();
    for mode in [
        HypergradMode::Exact,
        HypergradMode::ExactRecompute,
        HypergradMode::Truncated(2),
        HypergradMode::Implicit,
    ] {
        let params = FitParams::new(Task::Regression)
            .k(5)
            .hypergradient(mode)
            .ridge(0.1)
            .hidden(32);
        let mut trainer = Trainer::new(&params, &splits.train, &splits.meta).unwrap();
        // Per iteration: heap live before it and the most live during it.
        let mut live = Vec::with_capacity(ITERATIONS);
        let mut peak = Vec::with_capacity(ITERATIONS);
        for _ in 0..ITERATIONS {
            memory::reset_peak();
            live.push(memory::current_bytes());
            trainer.step().unwrap();
            peak.push(memory::peak_bytes());
        }
        assert!(memory::is_installed());
        let max = |v: &[usize]| v.iter().copied().max().unwrap();
        let (early_live, late_live) = (max(&live[WARM_UP..100]), max(&live[200..]));
        let (early_peak, late_peak) = (max(&peak[WARM_UP..100]), max(&peak[200..]));
        println!(
            "{mode}: live {early_live} → {late_live} bytes, peak {early_peak} → {late_peak} bytes"
        );
        // Allowance: a few KiB of allocator and bookkeeping jitter, nothing proportional to the
        // number of iterations (one leaked [n] tensor per iteration would add 160 KiB here).
        let slack = 16 * 1024;
        assert!(late_live <= early_live + slack, "{mode}: live heap grew");
        assert!(late_peak <= early_peak + slack, "{mode}: peak heap grew");
    }
}
