//! Seconds per outer iteration at the size of the PyTorch comparison (`benches/pytorch/`):
//! the MAM paper's regression protocol (noise B), n = 2000 training and 2000 meta rows,
//! p = 100 features with m = 10 orthonormalised cubic B-spline columns each (P = 1000), weight
//! net h = 100, squared loss, λ = 0.02, η = 1/L, AdamW on φ (lr 1e-3, weight decay 1e-4).
//!
//! What is timed is [`metaadd::Trainer::step`] itself: the exact K-step hypergradient (reverse
//! mode through the K unrolled steps), one AdamW step on φ, the real inner step with the weights
//! held fixed, and the iteration's metrics. A trainer takes 20 iterations at K = 5 first; every
//! K then resumes from that trainer's state ([`metaadd::Trainer::resume`], with
//! [`metaadd::Trainer::set_k`]), takes `--warmup` untimed iterations and times `--reps` more
//! (the state advances).
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example bench_outer -- \
//!     --dtype f64 --k 1,5,20 --reps 15 [--warmup 2] [--design auto|dense|sparse]
//!     [--dump state.safetensors --check 5]
//! ```
//!
//! Threads: candle 0.11's CPU matmul (gemm) runs `RAYON_NUM_THREADS` tasks on rayon's global
//! pool, which has as many threads, and its element-wise kernels use a pool of
//! `CANDLE_NUM_THREADS` (default: `RAYON_NUM_THREADS`); the fused weight net uses the rayon
//! pool. Setting `RAYON_NUM_THREADS` alone therefore fixes the thread count everywhere.
//!
//! `--dump` writes the starting state (designs, targets, β, b, φ, η, λ) as safetensors for
//! `compare.py`; `--check K` adds the exact K-step hypergradient and meta loss at that state.
//! Prints one CSV line per K: `rust,dtype,threads,K,median_s,min_s,max_s,reps,design_gb,gb_per_s`,
//! the last two the bytes the products with the designs read per iteration, in the form they
//! read (`--design`; `auto` takes the sparse form at this m = 10) (K unrolled steps
//! and their reverse pass, 4K passes over the training design; the meta loss and its gradient,
//! 2 over the meta design; the real step, 2 over the training design; with fused steps,
//! `--design fused`, 2K and 1) and that over the median: compare with
//! `cargo bench --bench bandwidth`.

use anyhow::{bail, Context};
use candle_core::{DType, Tensor};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::design::DesignStorage;
use metaadd::hypergrad::{hypergradient, HypergradOptions};
use metaadd::{BasisSpec, FitParams, Task, Trainer};
use std::collections::HashMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N_ROWS: usize = 2000;
const N_FEATURES: usize = 100;
const N_BASIS: usize = 10;
const WARMUP_ITERATIONS: usize = 20;

struct Args {
    dtype: DType,
    ks: Vec<usize>,
    reps: usize,
    warmup: usize,
    dump: Option<String>,
    check: Option<usize>,
    design: DesignStorage,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        dtype: DType::F64,
        ks: vec![1, 5, 20],
        reps: 15,
        warmup: 2,
        dump: None,
        check: None,
        design: DesignStorage::Auto,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dtype" => {
                args.dtype = match value()?.as_str() {
                    "f32" => DType::F32,
                    "f64" => DType::F64,
                    other => bail!("--dtype f32 or f64, got {other}"),
                }
            }
            "--k" => {
                args.ks = value()?
                    .split(',')
                    .map(|k| k.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--k takes a comma-separated list of depths")?;
                if args.ks.contains(&0) {
                    bail!("--k: depths must be at least 1");
                }
            }
            "--reps" => args.reps = value()?.parse().context("--reps")?,
            "--warmup" => args.warmup = value()?.parse().context("--warmup")?,
            "--dump" => args.dump = Some(value()?),
            "--check" => args.check = Some(value()?.parse().context("--check")?),
            "--design" => args.design = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    Ok(args)
}

/// Writes the trainer's current state (and, with `check`, its exact hypergradient) for
/// `compare.py`.
fn dump(path: &str, trainer: &Trainer, check: Option<usize>) -> anyhow::Result<()> {
    let problem = trainer.bilevel();
    let (coefficients, net) = (trainer.coefficients(), trainer.weightnet());
    let dev = problem.train.design().device();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("train.design".into(), problem.train.design().clone());
    tensors.insert("train.target".into(), problem.train.target().clone());
    tensors.insert("meta.design".into(), problem.meta.design().clone());
    tensors.insert("meta.target".into(), problem.meta.target().clone());
    tensors.insert("beta".into(), coefficients.beta.clone());
    tensors.insert("bias".into(), coefficients.bias.clone());
    for (name, t) in net.tensors().with_names() {
        tensors.insert(name.into(), t);
    }
    let step = problem.step;
    let settings = [
        ("eta", step.eta),
        ("lambda", step.lambda),
        ("n_features", step.n_features as f64),
    ];
    for (name, v) in settings {
        tensors.insert(name.into(), Tensor::new(&[v], dev)?);
    }
    if let Some(k) = check {
        let hg = hypergradient(&problem, coefficients, net, HypergradOptions::new(k))?;
        tensors.insert("check.k".into(), Tensor::new(&[k as f64], dev)?);
        tensors.insert("check.meta_loss".into(), Tensor::new(&[hg.meta_loss], dev)?);
        for (name, g) in hg.grads.with_names() {
            tensors.insert(format!("check.grad.{name}"), g);
        }
    }
    candle_core::safetensors::save(&tensors, path)?;
    Ok(())
}

/// Bytes read from the training and meta designs, in the form the products read, in one outer
/// iteration.
fn design_bytes(k: usize, trainer: &Trainer) -> f64 {
    let problem = trainer.bilevel();
    let (train, meta) = (
        problem.train.products().bytes_per_pass(),
        problem.meta.products().bytes_per_pass(),
    );
    // A fused step reads the rows once forward and once backward, a two-pass step twice each.
    let (per_step, real_step) = match problem.train.products().fused_steps() {
        Some(_) => (2, 1),
        None => (4, 2),
    };
    ((per_step * k + real_step) * train + 2 * meta) as f64
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(N_ROWS)
        .n_features(N_FEATURES)
        .generate(7)?;
    // The protocol's targets are standardised already: fitted as they are.
    let params = FitParams::new(Task::Regression)
        .basis(BasisSpec::bspline(N_BASIS).orthonormalized(true))
        .k(5)
        .lambda(0.02)
        .learning_rate(1e-3)
        .weight_decay(1e-4)
        .standardize_target(false)
        .dtype(args.dtype)
        .design(args.design);
    // A partly trained state rather than β = 0, shared by every K.
    let mut trainer = Trainer::new(&params, &splits.train, &splits.meta)?;
    for _ in 0..WARMUP_ITERATIONS {
        trainer.step()?;
    }
    if let Some(path) = &args.dump {
        dump(path, &trainer, args.check)?;
    }
    let start = trainer.model()?;
    let threads = candle_core::utils::get_num_threads();
    let dtype = format!("{:?}", args.dtype).to_lowercase();
    for &k in &args.ks {
        let mut trainer = Trainer::resume(&start, &splits.train, &splits.meta)?;
        trainer.set_k(k)?;
        for _ in 0..args.warmup {
            trainer.step()?;
        }
        let mut times = Vec::with_capacity(args.reps);
        for _ in 0..args.reps {
            let t = Instant::now();
            std::hint::black_box(trainer.step()?);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let bytes = design_bytes(k, &trainer);
        println!(
            "rust,{dtype},{threads},{k},{median:.6},{:.6},{:.6},{},{:.4},{:.2}",
            times[0],
            times[times.len() - 1],
            times.len(),
            bytes / 1e9,
            bytes / median / 1e9
        );
    }
    Ok(())
}
