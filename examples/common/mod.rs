//! Shared pieces of the real-data examples: loading the shipped CSV files, splitting them,
//! corrupting training targets, scoring and printing markdown tables.

#![allow(dead_code)] // each example uses a different subset

use metaadd::data::csv::CsvTable;
use metaadd::data::encoding::TargetScale;
use metaadd::{evaluate, Dataset, MetaAdditiveModel};
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
    let f = model.predict_values(test)?;
    Ok(evaluate::mse(&scale.decode(&f), test.y()))
}

/// Accuracy and macro-F1 of a classifier on labelled rows.
pub fn accuracy_macro_f1(model: &MetaAdditiveModel, test: &Dataset) -> anyhow::Result<(f64, f64)> {
    let scores = model.evaluate(test)?;
    let s = scores
        .as_classification()
        .ok_or_else(|| anyhow::anyhow!("a classifier"))?;
    Ok((s.accuracy, s.macro_f1))
}

/// Prints a markdown table.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", headers.join(" | "));
    println!("|{}", "---|".repeat(headers.len()));
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
}

/// Runs `experiment` (or its small version with `quick`: 300 rows per split, 10 features, 2
/// seeds), keeping finished fits in `target/experiments/NAME[-quick].csv` so that a stopped
/// run resumes, and prints the markdown table.
pub fn run_experiment(
    mut experiment: metaadd::experiment::Experiment,
    name: &str,
    quick: bool,
) -> anyhow::Result<()> {
    if quick {
        experiment.n = 300;
        experiment.n_features = 10;
        experiment.seeds = 2;
    }
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/experiments");
    std::fs::create_dir_all(&folder)?;
    let results = folder.join(format!("{name}{}.csv", if quick { "-quick" } else { "" }));
    let records = experiment.run(Some(&results), |record, done, total| {
        eprintln!(
            "[{done}/{total}] {} {} seed {}: {:.1} s",
            record.setting, record.method, record.seed, record.seconds
        );
    })?;
    println!("{}", metaadd::experiment::table(&records));
    eprintln!("results: {}", results.display());
    Ok(())
}
