//! The crossover between the dense and the sparse B-spline design: the time of one pair of
//! products `Φβ` and `Φᵀz` (what an unrolled step's forward or backward pass costs) with each
//! form, over columns per feature m, rows n and dtype, at p features of cubic B-splines.
//!
//! ```text
//! RAYON_NUM_THREADS=T cargo run --release --example bench_design -- [--n 2000,20000,100000]
//!     [--m 4,6,8,10,16] [--p 100] [--reps 21]
//! ```
//!
//! Prints one CSV line per cell:
//! `threads,dtype,n,m,dense_us,sparse_us,dense_over_sparse,dense_mb,sparse_mb`
//! (median of `reps` pairs after one warm-up; MB = 10⁶ bytes one product reads).

use metaadd::candle_core::{DType, Device, Tensor};
use metaadd::design::Design;
use metaadd::{BasisSpec, SplineBasis};
use rand::{rngs::StdRng, Rng, SeedableRng};

mod grid;

fn main() -> anyhow::Result<()> {
    let grid::Grid { ns, ms, p, reps } = grid::Grid {
        ns: vec![2000, 20_000, 100_000],
        ms: vec![4, 6, 8, 10, 16],
        p: 100,
        reps: 21,
    }
    .with_args()?;
    let threads = rayon::current_num_threads();
    println!("threads,dtype,n,m,dense_us,sparse_us,dense_over_sparse,dense_mb,sparse_mb");
    let dev = Device::Cpu;
    for &n in &ns {
        let mut rng = StdRng::seed_from_u64(1);
        let x: Vec<f64> = (0..n * p).map(|_| rng.random::<f64>()).collect();
        for &m in &ms {
            let basis = SplineBasis::fit(BasisSpec::bspline(m).orthonormalized(true), &x, p)?;
            let matrix = Tensor::from_vec(basis.transform(&x)?, (n, p * m), &dev)?;
            for dtype in [DType::F32, DType::F64] {
                let dense = Design::dense(&matrix.to_dtype(dtype)?)?;
                let sparse = dense.clone().with_sparse(basis.sparse_design(&x, dtype)?)?;
                let beta = Tensor::randn(0.0, 1.0, (p * m, 1), &dev)?.to_dtype(dtype)?;
                let z = Tensor::randn(0.0, 1.0, (n, 1), &dev)?.to_dtype(dtype)?;
                let pair = |d: &Design| {
                    let d = d.clone();
                    let (beta, z) = (beta.clone(), z.clone());
                    let only = std::env::var("ONLY").unwrap_or_default();
                    move || -> anyhow::Result<()> {
                        if only != "t" {
                            d.mul(&beta)?;
                        }
                        if only != "f" {
                            d.mul_t(&z)?;
                        }
                        Ok(())
                    }
                };
                let t_dense = grid::median_seconds(reps, pair(&dense))? * 1e6;
                let t_sparse = grid::median_seconds(reps, pair(&sparse))? * 1e6;
                println!(
                    "{threads},{dtype:?},{n},{m},{t_dense:.1},{t_sparse:.1},{:.2},{:.2},{:.2}",
                    t_dense / t_sparse,
                    dense.bytes_per_pass() as f64 / 1e6,
                    sparse.bytes_per_pass() as f64 / 1e6,
                );
            }
        }
    }
    Ok(())
}
