//! One outer iteration of MAM training (hypergradient, AdamW step on φ, real inner step) for
//! every hypergradient mode, K ∈ {1, 5, 20, 50} and n ∈ {2 000, 20 000} training rows, at
//! p = 100 features × m = 6 basis columns (P = 600), h = 100 hidden units, 500 meta rows, f32.
//!
//! `cargo bench --bench outer_iteration`; `-- n2000` runs the smaller size only. Matrix-product
//! FLOPs per iteration, for the GFLOP/s in docs/experiments.md, are printed once at the start.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::{FitParams, HypergradMode, Task, Trainer};
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FEATURES: usize = 100;
const BASIS: usize = 6;
const META_ROWS: usize = 500;
const KS: [usize; 4] = [1, 5, 20, 50];

/// Floating-point operations of the products with Φ in one outer iteration (one output): an
/// inner step is Φβ and Φᵀr (4nP), its vector–Jacobian product the same again, the meta loss
/// 2n_mP each way, and the real step 6nP (losses, outputs, gradient). `None` for implicit,
/// whose count depends on how fast it converges.
fn matmul_flops(mode: HypergradMode, k: usize, n: usize) -> Option<f64> {
    let p = (FEATURES * BASIS) as f64;
    let (n, nm, k) = (n as f64, META_ROWS as f64, k as f64);
    let step = 4.0 * n * p;
    let fixed = 4.0 * nm * p + 6.0 * n * p;
    let unrolled = match mode {
        HypergradMode::Exact => 2.0 * k * step,
        HypergradMode::ExactRecompute => 3.0 * k * step,
        HypergradMode::Truncated(t) => (k + t as f64) * step,
        HypergradMode::OneStep => 2.0 * step,
        HypergradMode::Implicit => return None,
    };
    Some(unrolled + fixed)
}

fn cases() -> Vec<(HypergradMode, usize)> {
    let mut cases = Vec::new();
    for mode in [
        HypergradMode::Exact,
        HypergradMode::ExactRecompute,
        HypergradMode::Truncated(1),
    ] {
        cases.extend(KS.iter().map(|&k| (mode, k)));
    }
    // Modes without K: one entry each.
    cases.push((HypergradMode::OneStep, 1));
    cases.push((HypergradMode::Implicit, 1));
    cases
}

fn outer_iteration(c: &mut Criterion) {
    for n in [2_000, 20_000] {
        let splits = RegressionProtocol::new(RegressionNoise::B)
            .n_train(n)
            .n_meta(META_ROWS)
            .n_test(10)
            .n_features(FEATURES)
            .generate(7)
            .expect("protocol");
        let mut group = c.benchmark_group(format!("outer_iteration_n{n}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for (mode, k) in cases() {
            if let Some(flops) = matmul_flops(mode, k, n) {
                eprintln!("flops n={n} {mode} K={k}: {flops:.4e}");
            }
            let params = FitParams::new(Task::Regression)
                .basis(metaadd::BasisSpec::bspline(BASIS).orthonormalized(true))
                .k(k)
                .hypergradient(mode)
                .lambda(0.02)
                // A strongly convex inner problem, so that the implicit mode converges.
                .ridge(0.1);
            let mut trainer = Trainer::new(&params, &splits.train, &splits.meta).expect("trainer");
            // Start from a partly trained state rather than β = 0.
            for _ in 0..5 {
                trainer.step().expect("warm-up step");
            }
            let id = match mode {
                HypergradMode::OneStep | HypergradMode::Implicit => mode.to_string(),
                _ => format!("{mode}/K={k}"),
            };
            group.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter(|| trainer.step().expect("step"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, outer_iteration);
criterion_main!(benches);
