//! Seconds per outer iteration at the size of the PyTorch comparison (`benches/pytorch/`):
//! the MAM paper's regression protocol (noise B), n = 2000 training and 2000 meta rows,
//! p = 100 features with m = 10 orthonormalised cubic B-spline columns each (P = 1000), weight
//! net h = 100, squared loss, λ = 0.02, η = 1/L.
//!
//! One outer iteration is what [`metaadd::Trainer::step`] does, written out so that every K
//! starts from the same state: the exact K-step hypergradient (reverse mode through the K
//! unrolled steps), one AdamW step on φ (lr 1e-3, weight decay 1e-4), the real inner step with
//! the weights held fixed, and the same scalar metrics.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example bench_outer -- \
//!     --dtype f64 --k 1,5,20 --reps 15 [--dump state.safetensors --check 5]
//! ```
//!
//! Threads: candle 0.11's CPU matmul (gemm) runs `RAYON_NUM_THREADS` tasks on rayon's global
//! pool, which has as many threads, and its element-wise kernels use a pool of
//! `CANDLE_NUM_THREADS` (default: `RAYON_NUM_THREADS`); the fused weight net uses the rayon
//! pool. Setting `RAYON_NUM_THREADS` alone therefore fixes the thread count everywhere.
//!
//! `--dump` writes the starting state (designs, targets, β, b, φ, η, λ) as safetensors for
//! `compare.py`; `--check K` adds the exact K-step hypergradient and meta loss at that state.
//! Prints one CSV line per K: `rust,dtype,threads,K,median_s,min_s,max_s,reps`.

use anyhow::{bail, Context};
use candle_core::{DType, Tensor};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::hypergrad::{hypergradient, Bilevel, HypergradOptions};
use metaadd::inner::Coefficients;
use metaadd::optim::{AdamW, AdamWParams};
use metaadd::{BasisSpec, FitParams, Task, Trainer, WeightNet};
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
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        dtype: DType::F64,
        ks: vec![1, 5, 20],
        reps: 15,
        warmup: 2,
        dump: None,
        check: None,
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
            other => bail!("unknown argument {other}"),
        }
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    Ok(args)
}

/// The optimised state of one outer iteration.
struct State {
    coefficients: Coefficients,
    net: WeightNet,
    optimizer: AdamW,
}

impl State {
    /// A deep copy of `coefficients` and `net` (fresh variables) with a fresh AdamW.
    fn new(coefficients: &Coefficients, net: &WeightNet) -> anyhow::Result<Self> {
        let net = WeightNet::from_tensors(&net.tensors())?;
        let optimizer = AdamW::new(
            net.vars().iter().map(|&v| v.clone()).collect(),
            AdamWParams {
                lr: 1e-3,
                weight_decay: 1e-4,
                ..AdamWParams::default()
            },
        )?;
        Ok(Self {
            coefficients: coefficients.clone(),
            net,
            optimizer,
        })
    }
}

fn scalar(t: &Tensor) -> anyhow::Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// One outer iteration as `Trainer::step` takes it (full batches, one real inner step).
/// Returns the meta loss so that the work cannot be optimised away.
fn outer_iteration(problem: &Bilevel, s: &mut State, k: usize) -> anyhow::Result<f64> {
    let hg = hypergradient(problem, &s.coefficients, &s.net, HypergradOptions::new(k))?;
    let norm = hg.norm()?;
    s.optimizer.step(&hg.grads)?;
    let losses = problem.train.losses(&s.coefficients)?.detach();
    let weights = s.net.forward(&losses)?.detach();
    let train_loss = scalar(&losses.mean_all()?)?;
    let mean_weight = scalar(&weights.mean_all()?)?;
    s.coefficients = problem
        .step
        .apply_with_weights(&problem.train, &s.coefficients, &weights)?
        .detach();
    let c = &s.coefficients;
    let size = scalar(&c.beta.abs()?.sum_all()?)? + scalar(&c.bias.abs()?.sum_all()?)?;
    let active = c.active_groups(problem.step.n_features)?.len();
    if !(norm + train_loss + mean_weight + size).is_finite() || active > N_FEATURES {
        bail!("outer iteration diverged");
    }
    Ok(hg.meta_loss)
}

fn dump(
    path: &str,
    problem: &Bilevel,
    coefficients: &Coefficients,
    net: &WeightNet,
    check: Option<usize>,
) -> anyhow::Result<()> {
    let dev = problem.train.design().device();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("train.design".into(), problem.train.design().clone());
    tensors.insert("train.target".into(), problem.train.target().clone());
    tensors.insert("meta.design".into(), problem.meta.design().clone());
    tensors.insert("meta.target".into(), problem.meta.target().clone());
    tensors.insert("beta".into(), coefficients.beta.clone());
    tensors.insert("bias".into(), coefficients.bias.clone());
    for (name, t) in metaadd::weightnet::PARAMETER_NAMES
        .iter()
        .zip(net.tensors())
    {
        tensors.insert((*name).into(), t);
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
        let hg = hypergradient(problem, coefficients, net, HypergradOptions::new(k))?;
        tensors.insert("check.k".into(), Tensor::new(&[k as f64], dev)?);
        tensors.insert("check.meta_loss".into(), Tensor::new(&[hg.meta_loss], dev)?);
        for (name, g) in metaadd::weightnet::PARAMETER_NAMES.iter().zip(&hg.grads) {
            tensors.insert(format!("check.grad.{name}"), g.clone());
        }
    }
    candle_core::safetensors::save(&tensors, path)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(N_ROWS)
        .n_features(N_FEATURES)
        .generate(7)?;
    let params = FitParams::new(Task::Regression)
        .basis(BasisSpec::bspline(N_BASIS).orthonormalized(true))
        .k(5)
        .lambda(0.02)
        .dtype(args.dtype);
    // A partly trained state rather than β = 0, shared by every K.
    let mut trainer = Trainer::new(&params, &splits.train, &splits.meta)?;
    for _ in 0..WARMUP_ITERATIONS {
        trainer.step()?;
    }
    let problem = trainer.bilevel();
    let (start, net) = (trainer.coefficients(), trainer.weightnet());
    if let Some(path) = &args.dump {
        dump(path, &problem, start, net, args.check)?;
    }
    let threads = candle_core::utils::get_num_threads();
    let dtype = format!("{:?}", args.dtype).to_lowercase();
    for &k in &args.ks {
        let mut state = State::new(start, net)?;
        for _ in 0..args.warmup {
            outer_iteration(&problem, &mut state, k)?;
        }
        let mut times = Vec::with_capacity(args.reps);
        for _ in 0..args.reps {
            let t = Instant::now();
            std::hint::black_box(outer_iteration(&problem, &mut state, k)?);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "rust,{dtype},{threads},{k},{:.6},{:.6},{:.6},{}",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            times.len()
        );
    }
    Ok(())
}
