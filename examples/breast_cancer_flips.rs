//! Binary classification under label noise on breast_cancer: 30% of the training labels are
//! flipped. Compares uniform weights with MAM, and two ways of choosing MAM's clean meta set
//! from a clean pool of the same size: stratified at random, or the "hard" rows (after Jain,
//! Suggala and Shenoy: the correctly classified pool rows with the smallest margin under the
//! uniform-weight fit). Test accuracy and macro-F1 over 5 seeds.
//!
//! Run: `cargo run --release --example breast_cancer_flips`

mod common;

use common::{accuracy_macro_f1, load, print_table};
use metaadd::data::split::{flip_labels, three_way};
use metaadd::data::split::{hard_holdout, holdout};
use metaadd::experiment::mean_sd;
use metaadd::{FitParams, Task, Weighting};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEEDS: u64 = 5;
const FLIP_SHARE: f64 = 0.3;

fn main() -> anyhow::Result<()> {
    let data = load("breast_cancer.csv", "target")?;
    let params = FitParams::new(Task::Binary).iterations(1000);
    let methods = [
        "uniform weights",
        "MAM, random meta set",
        "MAM, hard meta set",
    ];
    let mut accuracy = vec![Vec::new(); methods.len()];
    let mut f1 = vec![Vec::new(); methods.len()];
    for seed in 0..SEEDS {
        // 60% training (labels flipped), 20% clean pool, 20% test; the meta set is half the pool.
        let (train, pool, test) = three_way(&data, 0.2, 0.2, true, seed)?;
        let (train, _) = flip_labels(&train, FLIP_SHARE, 2, 200 + seed)?;
        let uniform = params
            .clone()
            .weighting(Weighting::Uniform)
            .fit(&train, &pool)?;
        let (_, random_meta) = holdout(&pool, 0.5, true, 300 + seed)?;
        let margins = uniform.model.additive().margins(&pool)?;
        let (_, hard_meta) = hard_holdout(&pool, 0.5, &margins)?;
        let models = [
            uniform.model,
            params.fit(&train, &random_meta)?.model,
            params.fit(&train, &hard_meta)?.model,
        ];
        for (k, model) in models.iter().enumerate() {
            let (a, f) = accuracy_macro_f1(model, &test)?;
            accuracy[k].push(a);
            f1[k].push(f);
        }
    }
    println!(
        "breast_cancer: {} rows, 30 features; 60% training with {:.0}% of labels flipped, 20% \
         clean pool (meta set: half of it), 20% test; {SEEDS} seeds\n",
        data.n_samples(),
        100.0 * FLIP_SHARE
    );
    let rows: Vec<Vec<String>> = methods
        .iter()
        .enumerate()
        .map(|(k, m)| vec![m.to_string(), mean_sd(&accuracy[k], 3), mean_sd(&f1[k], 3)])
        .collect();
    print_table(&["method", "test accuracy", "test macro-F1"], &rows);
    Ok(())
}
