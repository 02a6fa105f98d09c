//! The CUDA backend against the CPU: the hypergradient of every mode at K = 1, 5, 20 (within
//! 1e-5 relative in f32 and 1e-10 in f64; the implicit mode, which has no K, once, within its
//! own solver's tolerances: 1e-4 in f32 and 1e-8 in f64, since each device stops its inner and
//! conjugate-gradient solves somewhere inside them), one model file's predictions on both
//! (within 1e-6, f32 and f64 models), and a fit on the GPU selecting the CPU fit's features.
//!
//! Each test needs a GPU and a build with `--features cuda`, so each is ignored by a plain
//! `cargo test`, which lists them as `ignored, needs a CUDA GPU`: `bash scripts/gpu-check.sh`
//! runs them (`cargo test --release --features cuda --test cuda -- --ignored`).

use candle_core::{DType, Device};
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol, Splits};
use metaadd::hypergrad::hypergradient;
use metaadd::{FitParams, HypergradMode, MetaAdditiveModel, Task, Trainer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn gpu() -> Result<Device> {
    if !cfg!(feature = "cuda") {
        return Err("built without the `cuda` feature: run bash scripts/gpu-check.sh".into());
    }
    Ok(metaadd::runtime::device("cuda:0")?)
}

fn splits() -> Result<Splits> {
    Ok(RegressionProtocol::new(RegressionNoise::B)
        .n(300)
        .n_features(10)
        .generate(3)?)
}

/// The hypergradient at a fit's starting point on `device`, flattened to f64 on the host.
fn hypergradient_on(params: &FitParams, device: &Device, data: &Splits) -> Result<Vec<f64>> {
    let params = params.clone().device(device.clone());
    let trainer = Trainer::new(&params, &data.train, &data.meta)?;
    let hg = hypergradient(
        &trainer.bilevel(),
        trainer.coefficients(),
        trainer.weightnet(),
        params.hypergrad_options(),
    )?;
    let mut flat = Vec::new();
    for (_, t) in hg.grads.named() {
        flat.extend(
            t.to_device(&Device::Cpu)?
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?,
        );
    }
    Ok(flat)
}

fn relative(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

#[test]
#[ignore = "needs a CUDA GPU: bash scripts/gpu-check.sh"]
fn hypergradients_on_the_gpu_match_the_cpu_in_every_mode() -> Result<()> {
    let gpu = gpu()?;
    let data = splits()?;
    for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::F64, 1e-10)] {
        let runs = [1, 5, 20].into_iter().flat_map(|k| {
            [
                HypergradMode::Exact,
                HypergradMode::ExactRecompute,
                HypergradMode::Truncated(1),
                HypergradMode::OneStep,
            ]
            .map(|mode| (k, mode))
        });
        for (k, mode) in runs.chain([(1, HypergradMode::Implicit)]) {
            let tolerance = match (mode, dtype) {
                (HypergradMode::Implicit, DType::F32) => 1e-4,
                (HypergradMode::Implicit, _) => 1e-8,
                _ => tolerance,
            };
            let params = FitParams::new(Task::Regression)
                .k(k)
                .hypergradient(mode)
                .dtype(dtype)
                .standardize_target(false);
            let cpu = hypergradient_on(&params, &Device::Cpu, &data)?;
            let on_gpu = hypergradient_on(&params, &gpu, &data)?;
            let error = relative(&on_gpu, &cpu);
            println!("{dtype:?} K = {k} {mode}: relative difference {error:.2e}");
            assert!(
                error <= tolerance,
                "{dtype:?}, K = {k}, {mode}: GPU and CPU differ by {error:.2e} (relative)"
            );
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs a CUDA GPU: bash scripts/gpu-check.sh"]
fn one_model_file_predicts_the_same_on_both_and_a_gpu_fit_selects_the_same_features() -> Result<()>
{
    let gpu = gpu()?;
    let data = splits()?;
    // The default f32 model and an f64 one: the same file predicts the same on both devices.
    for dtype in [DType::F32, DType::F64] {
        let params = FitParams::new(Task::Regression)
            .iterations(100)
            .dtype(dtype)
            .standardize_target(false);
        let bytes = params.fit(&data.train, &data.meta)?.model.to_bytes()?;
        let on_cpu =
            MetaAdditiveModel::from_bytes(&bytes, &Device::Cpu)?.predict_values(&data.test)?;
        let on_gpu = MetaAdditiveModel::from_bytes(&bytes, &gpu)?.predict_values(&data.test)?;
        let worst = on_cpu
            .iter()
            .zip(&on_gpu)
            .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-6,
            "{dtype:?}: predictions differ by {worst:.2e}"
        );
    }
    let params = FitParams::new(Task::Regression)
        .iterations(200)
        .dtype(DType::F64)
        .standardize_target(false);
    let cpu_fit = params.fit(&data.train, &data.meta)?;
    let gpu_fit = params.clone().device(gpu).fit(&data.train, &data.meta)?;
    assert_eq!(
        gpu_fit.model.additive().selected_features()?,
        cpu_fit.model.additive().selected_features()?
    );
    Ok(())
}
