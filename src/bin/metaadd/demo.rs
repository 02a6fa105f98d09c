//! `metaadd demo`: the paper's synthetic regression protocol with noise B, scaled down.

use crate::outputs;
use anyhow::Context;
use clap::Args;
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::{Dataset, FitParams, MetaAdditiveModel, Task, Weighting};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub runtime: crate::args::RuntimeArgs,
    /// Rows in each of the training, meta and test sets.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Number of features (the first 8 carry signal).
    #[arg(long, default_value_t = 20)]
    n_features: usize,
    /// Outer iterations.
    #[arg(long, visible_alias = "epochs", default_value_t = 1500)]
    iterations: usize,
    /// Unroll depth K.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Group-lasso strength λ.
    #[arg(long, default_value_t = 0.02)]
    lambda: f64,
    /// Seed for data and training.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where to write the trained MAM (its folder is created if missing; `-` is refused).
    #[arg(long, default_value = "models/demo-regression.safetensors")]
    out: PathBuf,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let device = args.runtime.start()?;
    // The folder is created after training: check that it can be.
    let folder = args.out.parent().filter(|d| !d.as_os_str().is_empty());
    match folder.filter(|d| !d.exists()) {
        Some(missing) => outputs::folder("--out", missing, &[])?,
        None => outputs::file("--out", &args.out, "a model file is binary")?,
    }
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(args.n)
        .n_features(args.n_features)
        .generate(args.seed)?;
    println!(
        "paper regression protocol, noise B: {} rows per split, {} features (true: x1..x8), \
         {} training outliers",
        args.n,
        args.n_features,
        splits.corrupted.iter().filter(|&&c| c).count()
    );
    let params = FitParams::new(Task::Regression)
        .k(args.k)
        .lambda(args.lambda)
        .iterations(args.iterations)
        .seed(args.seed)
        // The protocol's targets are already standardised with its meta set.
        .standardize_target(false)
        .device(device);
    println!(
        "\n{:<10} {:>10} {:>9} {:>8}  selected",
        "weights", "test MSE", "seconds", "features"
    );
    let mut mam = None;
    for weighting in [Weighting::Meta, Weighting::Uniform] {
        let start = Instant::now();
        let fit = params
            .clone()
            .weighting(weighting)
            .fit(&splits.train, &splits.meta)?;
        let seconds = start.elapsed().as_secs_f64();
        let model = fit.model.additive();
        let selected = model.selected_features()?;
        let names: Vec<&str> = selected
            .iter()
            .map(|&j| model.feature_names()[j].as_str())
            .collect();
        println!(
            "{:<10} {:>10.4} {:>9.1} {:>8}  {}",
            if weighting == Weighting::Meta {
                "MAM"
            } else {
                "uniform"
            },
            test_mse(&fit.model, &splits.test)?,
            seconds,
            selected.len(),
            names.join(" ")
        );
        if weighting == Weighting::Meta {
            mam = Some(fit.model);
        }
    }
    let mam = mam.context("MAM was not trained")?;
    if let Some(dir) = folder {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    mam.save(&args.out)?;
    println!("\nwrote {}", args.out.display());
    Ok(())
}

fn test_mse(model: &MetaAdditiveModel, test: &Dataset) -> anyhow::Result<f64> {
    let scores = model.evaluate(test)?;
    let scores = scores.as_regression().context("a regression model")?;
    Ok(scores.mse)
}
