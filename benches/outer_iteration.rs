//! One outer iteration of MAM training (hypergradient through K steps, AdamW step, real inner
//! step) at the demo's size: paper regression protocol with noise B, n = 1000 rows per split,
//! p = 20 features, m = 6 basis functions, h = 100 hidden units.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::{FitParams, Task, Trainer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn outer_iteration(c: &mut Criterion) {
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(1000)
        .n_features(20)
        .generate(7)
        .expect("protocol");
    let mut group = c.benchmark_group("outer_iteration_demo_size");
    group.sample_size(20);
    for k in [1, 5, 20] {
        let params = FitParams::new(Task::Regression).k(k).lambda(0.02);
        let mut trainer = Trainer::new(&params, &splits.train, &splits.meta).expect("trainer");
        // Start from a partly trained state rather than β = 0.
        for _ in 0..20 {
            trainer.step().expect("warm-up step");
        }
        group.bench_with_input(BenchmarkId::new("K", k), &k, |b, _| {
            b.iter(|| trainer.step().expect("step"))
        });
    }
    group.finish();
}

criterion_group!(benches, outer_iteration);
criterion_main!(benches);
