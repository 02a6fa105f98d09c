//! Whether fused steps pay: one unrolled step `T(β, φ)` and its backward on the sparse design,
//! read in two passes each way (`--design sparse`) or fused into one pass each way
//! (`--design fused`, [`metaadd::design::Design::fused_steps`]).
//!
//! A two-pass step reads the design for `f = Φβ`, forms the losses and weights, and reads it
//! again for `Φᵀ(w∘g)`; its backward reads it twice more. A fused step reads each block of rows
//! from memory once forward and once backward, with the losses, weights and scatter done while
//! the block is in the cache (and the backward reading the forward's outputs back). The
//! measurement is the library's own `InnerStep::apply` and `backward()` on a squared-loss
//! regression step with a weight net of `h = 100`, live weight input, p = 100 features.
//!
//! ```text
//! RAYON_NUM_THREADS=T cargo run --release --example bench_fused -- [--n 2000,100000,1000000]
//!     [--m 6,10] [--p 100] [--reps 11]
//! ```
//!
//! Prints one CSV line per cell:
//! `threads,dtype,n,m,two_pass_ms,fused_ms,two_over_fused,two_pass_gb_per_s,fused_gb_per_s`
//! (median of `reps` after one warm-up, forward and backward together; GB/s counts the stored
//! values and indices each version reads: four passes, or two fused).

use anyhow::Context;
use metaadd::candle_core::{DType, Device, Tensor, Var};
use metaadd::design::{Design, DesignStorage};
use metaadd::inner::{Coefficients, InnerStep, Problem, WeightInput};
use metaadd::{BasisSpec, Loss, SplineBasis, WeightNet};
use rand::{rngs::StdRng, Rng, SeedableRng};

mod grid;

fn main() -> anyhow::Result<()> {
    let grid::Grid { ns, ms, p, reps } = grid::Grid {
        ns: vec![2000, 100_000, 1_000_000],
        ms: vec![6, 10],
        p: 100,
        reps: 11,
    }
    .with_args()?;
    let threads = rayon::current_num_threads();
    let cpu = Device::Cpu;
    println!(
        "threads,dtype,n,m,two_pass_ms,fused_ms,two_over_fused,two_pass_gb_per_s,fused_gb_per_s"
    );
    for &n in &ns {
        let mut rng = StdRng::seed_from_u64(1);
        let x: Vec<f64> = (0..n * p).map(|_| rng.random::<f64>()).collect();
        let y: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        for &m in &ms {
            let basis = SplineBasis::fit(BasisSpec::bspline(m).orthonormalized(true), &x, p)?;
            let beta: Vec<f64> = (0..p * m)
                .map(|_| 0.1 * (rng.random::<f64>() - 0.5))
                .collect();
            for dtype in [DType::F32, DType::F64] {
                let target = Tensor::from_slice(&y, (n, 1), &cpu)?.to_dtype(dtype)?;
                let net = WeightNet::new(100, 0, dtype, &cpu)?;
                let beta = Var::from_tensor(
                    &Tensor::from_slice(&beta, (p * m, 1), &cpu)?.to_dtype(dtype)?,
                )?;
                let c = Coefficients {
                    beta: beta.as_tensor().clone(),
                    bias: Tensor::zeros(1, dtype, &cpu)?,
                };
                let step = InnerStep {
                    eta: 0.1,
                    lambda: 1e-3,
                    ridge: 0.0,
                    n_features: p,
                    normalize_weights: true,
                };
                let time = |storage: DesignStorage| -> anyhow::Result<(f64, usize)> {
                    let design = Design::from_basis(&basis, &x, storage, dtype, &cpu)?;
                    let bytes = design.bytes_per_pass();
                    let problem = Problem::from_design(design, &target, Loss::Squared)?;
                    let seconds = grid::median_seconds(reps, || {
                        let out = step.apply(&problem, &c, &net, WeightInput::Live)?;
                        let grads = out.next.beta.sum_all()?.backward()?;
                        let g = grads.get(beta.as_tensor()).context("no gradient")?;
                        Ok(g.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
                    })?;
                    Ok((seconds * 1e3, bytes))
                };
                let (two, bytes) = time(DesignStorage::Sparse)?;
                let (one, _) = time(DesignStorage::Fused)?;
                let gb = bytes as f64 / 1e9;
                println!(
                    "{threads},{dtype:?},{n},{m},{two:.3},{one:.3},{:.2},{:.1},{:.1}",
                    two / one,
                    4.0 * gb / (two / 1e3),
                    2.0 * gb / (one / 1e3)
                );
            }
        }
    }
    Ok(())
}
