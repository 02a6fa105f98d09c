//! `MemoryEstimate` against the heap a fit really uses (counted by `PeakAlloc`; the only test in
//! this binary, so no other thread allocates meanwhile): never below it, never far above.

use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::memory::{self, MemoryEstimate, PeakAlloc};
use metaadd::{Dataset, FitParams, HypergradMode, Task, Trainer};

#[global_allocator]
static GLOBAL: PeakAlloc<mimalloc::MiMalloc> = PeakAlloc::new(mimalloc::MiMalloc);

/// Peak heap of building a trainer and taking three outer iterations, above the heap before.
fn measured(params: &FitParams, train: &Dataset, meta: &Dataset) -> usize {
    let base = memory::current_bytes();
    memory::reset_peak();
    let mut trainer = Trainer::new(params, train, meta).unwrap();
    let mut peak = memory::peak_bytes() - base;
    for _ in 0..3 {
        memory::reset_peak();
        trainer.step().unwrap();
        peak = peak.max(memory::peak_bytes() - base);
    }
    if params.final_solve {
        memory::reset_peak();
        trainer.solve().unwrap();
        peak = peak.max(memory::peak_bytes() - base);
    }
    peak
}

#[test]
fn the_estimate_bounds_the_measured_peak_from_above_within_a_factor_two() {
    let s = RegressionProtocol::new(RegressionNoise::B)
        .n(1500)
        .n_features(20)
        .generate(0)
        .unwrap();
    let classes = |d: &Dataset| {
        d.with_targets(
            d.y()
                .iter()
                .map(|&y| ((y.abs() * 3.0) as usize % 3) as f64)
                .collect(),
        )
        .unwrap()
    };
    let (train3, meta3) = (classes(&s.train), classes(&s.meta));
    // Few features: the unrolled graph, not the designs, makes the peak.
    let narrow = RegressionProtocol::new(RegressionNoise::B)
        .n(1500)
        .n_features(8)
        .generate(0)
        .unwrap();
    let (narrow3, narrow_meta3) = (classes(&narrow.train), classes(&narrow.meta));
    let multiclass = Task::Multiclass { classes: 3 };
    use candle_core::DType::{F32, F64};
    // (task, mode, K, dtype, few features)
    let cases = [
        (Task::Regression, HypergradMode::Exact, 50, F64, true),
        (multiclass, HypergradMode::Exact, 30, F32, true),
        (Task::Regression, HypergradMode::Truncated(5), 30, F32, true),
        (
            Task::Regression,
            HypergradMode::ExactRecompute,
            30,
            F64,
            true,
        ),
        (Task::Regression, HypergradMode::Exact, 1, F32, false),
        (Task::Regression, HypergradMode::Exact, 20, F32, false),
        (Task::Regression, HypergradMode::Exact, 10, F64, false),
        (Task::Regression, HypergradMode::Implicit, 5, F64, false),
        (multiclass, HypergradMode::Exact, 10, F32, false),
        (multiclass, HypergradMode::OneStep, 1, F64, false),
    ];
    assert!(memory::is_installed());
    for (task, mode, k, dtype, few_features) in cases {
        let params = FitParams::new(task)
            .k(k)
            .hypergradient(mode)
            .dtype(dtype)
            .ridge(0.1);
        let (train, meta) = match (task, few_features) {
            (Task::Regression, false) => (&s.train, &s.meta),
            (Task::Regression, true) => (&narrow.train, &narrow.meta),
            (_, false) => (&train3, &meta3),
            (_, true) => (&narrow3, &narrow_meta3),
        };
        let real = measured(&params, train, meta);
        let estimate = MemoryEstimate::new(
            &params,
            train.n_samples(),
            meta.n_samples(),
            train.n_features(),
        );
        let ratio = estimate.peak() as f64 / real as f64;
        println!(
            "{task} {mode} K={k} {dtype:?}: measured {real}, estimated {} ({ratio:.2}×)",
            estimate.peak()
        );
        assert!(
            (1.0..=2.0).contains(&ratio),
            "{task} {mode} K={k}: {ratio:.2}×"
        );
    }
}
