//! Why do MAM's learned weights stop short of the clean-data floor under one-sided outliers?
//!
//! diabetes, split 60/10/30, 20% of the training targets moved up by 5 sd (the real-data
//! protocol's `outliers +5sd 20%`, docs/design.md §11.5), λ by the path as in `experiment`.
//! Each row changes one thing against default MAM; the clean floor is a uniform fit on the same
//! training rows before they were corrupted. Prints a markdown table of test MSE (standardised
//! targets, mean ± sd over 5 seeds), the mean learned weight of the moved and the clean rows,
//! and the seconds per fit.
//!
//! `cargo run --release --example outlier_study`

use metaadd::data::Dataset;
use metaadd::experiment::mean_sd;
use metaadd::experiment::real::{corrupted_splits, Corruption};
use metaadd::path::PathParams;
use metaadd::prepare::{Preparation, TaskKind};
use metaadd::weightnet::WeightCurve;
use metaadd::{FitParams, Table, Task, Weighting};
use std::path::Path;
use std::time::Instant;

const SEEDS: u64 = 5;

fn main() -> anyhow::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/diabetes.csv");
    let (data, _) =
        Preparation::new("target", TaskKind::Regression).dataset(&Table::read_csv(&path)?)?;
    let base = FitParams::new(Task::Regression)
        .iterations(100)
        .standardize_target(false);
    let variants: Vec<(&str, FitParams, bool)> = vec![
        (
            "uniform, clean targets (floor)",
            base.clone().weighting(Weighting::Uniform),
            true,
        ),
        ("uniform", base.clone().weighting(Weighting::Uniform), false),
        (
            "tilted(auto)",
            base.clone().weighting(Weighting::TiltedAuto),
            false,
        ),
        ("MAM (K = 5), defaults", base.clone(), false),
        (
            "MAM, learning rate 1e-2",
            base.clone().learning_rate(1e-2),
            false,
        ),
        (
            "MAM, 3 inner steps per iteration",
            base.clone().inner_steps(3),
            false,
        ),
        (
            "MAM, 300 iterations per λ",
            base.clone().iterations(300),
            false,
        ),
        (
            "MAM, normalised weights",
            base.clone().normalize_weights(true),
            false,
        ),
        (
            "MAM, decreasing curve (normalised)",
            base.clone().weight_curve(WeightCurve::Decreasing),
            false,
        ),
        (
            "MAM, no final solve",
            base.clone().final_solve(false),
            false,
        ),
    ];
    println!("| variant | test MSE | weight, moved rows | weight, clean rows | s / fit |");
    println!("|---|---|---|---|---|");
    for (name, params, clean) in variants {
        let (mut mse, mut moved, mut kept, mut seconds) = (vec![], vec![], vec![], 0.0);
        for seed in 0..SEEDS {
            let corruption = Corruption::OneSided {
                share: if clean { 0.0 } else { 0.2 },
            };
            let splits = corrupted_splits(&data, Task::Regression, corruption, seed)?;
            let marked = corrupted_splits(
                &data,
                Task::Regression,
                Corruption::OneSided { share: 0.2 },
                seed,
            )?
            .corrupted;
            let start = Instant::now();
            let path = PathParams::new(params.clone().seed(seed))
                .final_iterations(1000)
                .fit(&splits.train, &splits.meta)?;
            seconds += start.elapsed().as_secs_f64() / SEEDS as f64;
            let model = &path.model;
            mse.push(test_mse(model, &splits.test)?);
            if model.params().weighting == Weighting::Meta && !clean {
                let w = model.sample_weights(&splits.train)?;
                let mean = |flag: bool| {
                    let v: Vec<f64> = w
                        .iter()
                        .zip(&marked)
                        .filter(|(_, &m)| m == flag)
                        .map(|(w, _)| *w)
                        .collect();
                    v.iter().sum::<f64>() / v.len() as f64
                };
                moved.push(mean(true));
                kept.push(mean(false));
            }
        }
        let cell = |v: &[f64]| {
            if v.is_empty() {
                "–".to_string()
            } else {
                mean_sd(v, 3)
            }
        };
        println!(
            "| {name} | {} | {} | {} | {seconds:.1} |",
            mean_sd(&mse, 3),
            cell(&moved),
            cell(&kept)
        );
    }
    Ok(())
}

fn test_mse(model: &metaadd::MetaAdditiveModel, test: &Dataset) -> anyhow::Result<f64> {
    let predicted = model.predict_values(test)?;
    Ok(metaadd::evaluate::mse(&predicted, test.y()))
}
