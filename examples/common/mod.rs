//! Shared pieces of the real-data examples: loading the shipped CSV files, splitting them,
//! corrupting training targets, scoring and printing markdown tables.

#![allow(dead_code)] // each example uses a different subset

use metaadd::data::csv::CsvTable;
use metaadd::data::targets::TargetScale;
use metaadd::{metrics, Dataset, MetaAdditiveModel, Task};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// A CSV file shipped in `examples/data/`, with every other column as a feature.
pub fn load(file: &str, target: &str) -> anyhow::Result<Dataset> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data")
        .join(file);
    let (data, warnings) = CsvTable::read(&path)?.dataset(target, None)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(data)
}

/// Rows `0..n` in a seeded random order, the first `round(frac·n)` of them.
pub fn random_rows(n: usize, frac: f64, rng: &mut StdRng) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(rng);
    rows.truncate((frac * n as f64).round() as usize);
    rows.sort_unstable();
    rows
}

/// Test MSE in the target's units of a regression model fitted on standardised targets.
pub fn test_mse(
    model: &MetaAdditiveModel,
    scale: TargetScale,
    test: &Dataset,
) -> anyhow::Result<f64> {
    let f = model
        .additive()
        .predict_dataset(test)?
        .flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()?;
    Ok(metrics::mse(&scale.decode(&f), test.y()))
}

/// Accuracy and macro-F1 of a classifier on labelled rows (labels are class indices).
pub fn accuracy_f1(model: &MetaAdditiveModel, test: &Dataset) -> anyhow::Result<(f64, f64)> {
    let x = candle_core::Tensor::from_vec(
        test.x().to_vec(),
        (test.n_samples(), test.n_features()),
        &candle_core::Device::Cpu,
    )?;
    let predicted = model.additive().predict_labels(&x)?;
    let truth: Vec<usize> = test.y().iter().map(|&y| y as usize).collect();
    let classes = match model.additive().task() {
        Task::Multiclass { classes } => classes,
        _ => 2,
    };
    Ok((
        metrics::accuracy(&predicted, &truth),
        metrics::macro_f1(&predicted, &truth, classes),
    ))
}

/// `mean ± sd` (sample sd) of `values` with `digits` decimals.
pub fn mean_sd(values: &[f64], digits: usize) -> String {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    format!("{mean:.digits$} ± {sd:.digits$}")
}

/// Prints a markdown table.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", headers.join(" | "));
    println!("|{}", "---|".repeat(headers.len()));
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
}
