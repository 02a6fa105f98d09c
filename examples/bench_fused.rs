//! Whether one pass over the sparse design's rows for a step's `Φβ` and `Φᵀr` pays against
//! two: the row-fused pass of the speed issue, measured on the library's own kernels before it
//! is built into the unrolled steps.
//!
//! An unrolled step reads the design for `f = Φβ`, forms row by row `r_i = w_i (f_i − y_i)`,
//! and reads the design again for `Φᵀr`. Since `r_i` depends on row `i` alone, one pass can do
//! both: each row's `f_i`, its `r_i`, and its scatter into `Φᵀr` while the row is in the
//! cache. Both versions (`SplineDesign::residual_gradient`) run the library's product loops
//! (SSE2, four features into four accumulators, fixed chunks of rows on rayon's pool), so they
//! give the same bits (checked here) and their ratio is the fusion's gain alone.
//!
//! ```text
//! RAYON_NUM_THREADS=T cargo run --release --example bench_fused -- [--n 2000,100000,1000000]
//!     [--m 6,10] [--p 100] [--reps 11]
//! ```
//!
//! Prints one CSV line per cell:
//! `threads,dtype,n,m,two_pass_ms,fused_ms,two_over_fused,two_pass_gb_per_s,fused_gb_per_s`
//! (median of `reps` after one warm-up; GB/s counts the stored values and indices each version
//! reads: twice for two passes, once fused).

use anyhow::Context;
use metaadd::candle_core::DType;
use metaadd::design::SplineDesign;
use metaadd::{BasisSpec, SplineBasis};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Instant;

fn median_ms(reps: usize, mut f: impl FnMut() -> Vec<f64>) -> f64 {
    std::hint::black_box(f());
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

fn list(v: &str, flag: &str) -> anyhow::Result<Vec<usize>> {
    v.split(',')
        .map(|s| s.trim().parse().with_context(|| format!("{flag}: `{s}`")))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let (mut ns, mut ms, mut p, mut reps) = (vec![2000, 100_000, 1_000_000], vec![6, 10], 100, 11);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--n" => ns = list(&value, "--n")?,
            "--m" => ms = list(&value, "--m")?,
            "--p" => p = value.parse().context("--p")?,
            "--reps" => reps = value.parse().context("--reps")?,
            other => anyhow::bail!("unknown flag {other}: --n, --m, --p, --reps"),
        }
    }
    if reps == 0 {
        anyhow::bail!("--reps must be positive");
    }
    let threads = rayon::current_num_threads();
    println!(
        "threads,dtype,n,m,two_pass_ms,fused_ms,two_over_fused,two_pass_gb_per_s,fused_gb_per_s"
    );
    for &n in &ns {
        let mut rng = StdRng::seed_from_u64(1);
        let x: Vec<f64> = (0..n * p).map(|_| rng.random::<f64>()).collect();
        let y: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let w: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        for &m in &ms {
            let basis = SplineBasis::fit(BasisSpec::bspline(m).orthonormalized(true), &x, p)?;
            let beta: Vec<f64> = (0..p * m).map(|_| rng.random::<f64>() - 0.5).collect();
            for dtype in [DType::F32, DType::F64] {
                let design: SplineDesign = basis.sparse_design(&x, dtype)?;
                let run = |fused| design.residual_gradient(&beta, &y, &w, fused);
                if run(false) != run(true) {
                    anyhow::bail!("n = {n}, m = {m}, {dtype:?}: the two versions differ");
                }
                let two = median_ms(reps, || run(false));
                let one = median_ms(reps, || run(true));
                let gb = design.bytes_per_pass() as f64 / 1e9;
                println!(
                    "{threads},{dtype:?},{n},{m},{two:.3},{one:.3},{:.2},{:.1},{:.1}",
                    two / one,
                    2.0 * gb / (two / 1e3),
                    gb / (one / 1e3)
                );
            }
        }
    }
    Ok(())
}
