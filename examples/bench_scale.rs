//! Cost of one outer iteration as the training set grows, on a device: seconds per outer
//! iteration (median), the fit's peak heap (trainer, designs and the iterations; measured on
//! the CPU by the counting allocator, `-` on a GPU, whose memory the heap does not see)
//! beside the library's own estimate of a fit's peak (what `--max-memory` checks), the bytes
//! the products with the design Φ move per iteration and the rate that makes.
//!
//! The MAM paper's regression protocol (noise B) at p = 100 features × m = 6 orthonormalised
//! cubic B-spline columns (P = 600), 500 meta rows, h = 100, K = 5 exact, f32, full batch or
//! `--train-batch B` rows per outer iteration.
//!
//! ```text
//! cargo run --release --example bench_scale -- --n 10000,100000,1000000 [--device cuda]
//!     [--train-batch 10000] [--reps 5] [--design auto|dense|sparse|fused] [--solve]
//! ```
//!
//! Prints one CSV line per n:
//! `device,design,n,train_batch,setup_s,median_s,fit_peak_mib,estimate_mib,design_gb_per_iteration,gb_per_s,solve_s,solve_peak_mib`
//! (`design`: the form the products read, `auto`'s choice unless `--design` says; `setup_s`:
//! building the trainer (basis, designs, step size); `estimate_mib`: the whole fit's, final
//! solve included, which `fit_peak_mib` is not; with `--solve`, the final solve's seconds and
//! the fit's peak through it, else `-`),
//! then the growth exponent of the time in n (least squares on the logarithms).

use anyhow::{bail, Context};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::design::DesignStorage;
use metaadd::memory::{self, MemoryEstimate, PeakAlloc};
use metaadd::{BasisSpec, FitParams, Task, Trainer};
use std::time::Instant;

#[global_allocator]
static GLOBAL: PeakAlloc<mimalloc::MiMalloc> = PeakAlloc::new(mimalloc::MiMalloc);

const FEATURES: usize = 100;
const BASIS: usize = 6;
const META_ROWS: usize = 500;
const K: usize = 5;

struct Args {
    ns: Vec<usize>,
    device: String,
    train_batch: Option<usize>,
    reps: usize,
    design: DesignStorage,
    solve: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        ns: vec![10_000, 100_000],
        device: "cpu".into(),
        train_batch: None,
        reps: 5,
        design: DesignStorage::Auto,
        solve: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => {
                args.ns = value()?
                    .split(',')
                    .map(|v| v.trim().parse().with_context(|| format!("--n: `{v}`")))
                    .collect::<anyhow::Result<_>>()?
            }
            "--device" => args.device = value()?,
            "--train-batch" => args.train_batch = Some(value()?.parse().context("--train-batch")?),
            "--reps" => args.reps = value()?.parse().context("--reps")?,
            "--design" => args.design = value()?.parse()?,
            "--solve" => args.solve = true,
            "--bench" => {}
            other => bail!(
                "unknown flag {other}: --n, --device, --train-batch, --reps, --design, --solve"
            ),
        }
    }
    if args.reps == 0 || args.ns.is_empty() {
        bail!("--reps and --n need at least one");
    }
    Ok(args)
}

/// Bytes the products with Φ read per outer iteration, in the form they read (dense or
/// sparse): each unrolled step reads Φ for Φβ and Φᵀr, its vector–Jacobian product as much
/// again (a fused step once each way), the real step twice (outputs, gradient; once fused),
/// the meta design twice (the meta loss and its gradient); on the `rows` of `n` training rows
/// used (a mini-batch's row gather not counted). As `bench_outer`'s count.
fn design_bytes(trainer: &Trainer, rows: usize, n: usize, fused: bool) -> f64 {
    let problem = trainer.bilevel();
    let products = problem.train.products();
    let train = products.bytes_per_pass() as f64 * rows as f64 / n as f64;
    let meta = problem.meta.products().bytes_per_pass() as f64;
    // A fused step reads the rows once forward and once backward, a two-pass step twice each;
    // the real step once fused, twice (outputs, gradient) in two passes.
    let (per_step, real_step) = if fused { (2.0, 1.0) } else { (4.0, 2.0) };
    (per_step * K as f64 + real_step) * train + 2.0 * meta
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let device = metaadd::runtime::device(&args.device)?;
    println!(
        "device,design,n,train_batch,setup_s,median_s,fit_peak_mib,estimate_mib,design_gb_per_iteration,gb_per_s,solve_s,solve_peak_mib"
    );
    let mut points = Vec::new();
    for &n in &args.ns {
        let splits = RegressionProtocol::new(RegressionNoise::B)
            .n_train(n)
            .n_meta(META_ROWS)
            .n_test(10)
            .n_features(FEATURES)
            .generate(7)?;
        let mut params = FitParams::new(Task::Regression)
            .basis(BasisSpec::bspline(BASIS).orthonormalized(true))
            .k(K)
            .lambda(0.02)
            .standardize_target(false)
            .device(device.clone())
            .design(args.design);
        params.train_batch = args.train_batch;
        let estimate = MemoryEstimate::new(&params, n, META_ROWS, FEATURES).peak();
        // The fit's whole peak (its designs, tapes and all), against the estimate.
        let at_start = memory::current_bytes();
        memory::reset_peak();
        let start = Instant::now();
        let mut trainer = Trainer::new(&params, &splits.train, &splits.meta)?;
        let setup = start.elapsed().as_secs_f64();
        trainer.step()?; // warm-up
        let mut times = Vec::with_capacity(args.reps);
        for _ in 0..args.reps {
            let start = Instant::now();
            trainer.step()?;
            times.push(start.elapsed().as_secs_f64());
        }
        let peak = memory::peak_bytes().saturating_sub(at_start);
        let mib = |bytes: usize| {
            if device.is_cpu() {
                format!("{:.1}", bytes as f64 / (1 << 20) as f64)
            } else {
                "-".into()
            }
        };
        let solved = if args.solve {
            let start = Instant::now();
            trainer.solve()?;
            let seconds = start.elapsed().as_secs_f64();
            let peak = memory::peak_bytes().saturating_sub(at_start);
            format!("{seconds:.2},{}", mib(peak))
        } else {
            "-,-".into()
        };
        let rows = args.train_batch.map_or(n, |b| b.min(n));
        // Fused as the steps' rows (a mini-batch's) decide, not the whole design's.
        let sparse = trainer.bilevel().train.products().sparse().is_some();
        let fused = sparse && args.design.fuses(rows);
        let bytes = design_bytes(&trainer, rows, n, fused);
        let form = match (sparse, fused) {
            (_, true) => "fused",
            (true, false) => "sparse",
            (false, _) => "dense",
        };
        drop(trainer);
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{},{form},{n},{},{setup:.2},{median:.6},{},{:.1},{:.3},{:.2},{solved}",
            args.device,
            args.train_batch.map_or("all".into(), |b| b.to_string()),
            mib(peak),
            estimate as f64 / (1 << 20) as f64,
            bytes / 1e9,
            bytes / median / 1e9
        );
        points.push((n as f64, median));
    }
    if points.len() >= 2 {
        let logs: Vec<(f64, f64)> = points.iter().map(|&(n, t)| (n.ln(), t.ln())).collect();
        let mean_x = logs.iter().map(|p| p.0).sum::<f64>() / logs.len() as f64;
        let mean_y = logs.iter().map(|p| p.1).sum::<f64>() / logs.len() as f64;
        let sxy: f64 = logs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
        let sxx: f64 = logs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        println!("# time grows as n^{:.2}", sxy / sxx);
    }
    // The largest n whose estimated fit fits in 24 GiB.
    let budget = 24usize << 30;
    let estimate = |n: usize| {
        let mut params = FitParams::new(Task::Regression)
            .basis(BasisSpec::bspline(BASIS).orthonormalized(true))
            .k(K)
            .design(args.design);
        params.train_batch = args.train_batch;
        MemoryEstimate::new(&params, n, META_ROWS, FEATURES).peak()
    };
    let (mut lo, mut hi) = (1usize, 1usize << 40);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if estimate(mid) <= budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    println!("# largest n within 24 GiB by the estimate: {lo}");
    Ok(())
}
