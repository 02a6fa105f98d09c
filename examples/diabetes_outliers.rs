//! Robust regression on the diabetes data: 20% of the training targets are replaced by gross
//! outliers (the clean mean plus 5 to 10 clean standard deviations). MAM learns to down-weight
//! them from a clean meta set; the uniform-weight model is pulled towards them. Test MSE is on
//! the clean targets, in the target's units, over 5 seeds.
//!
//! Run: `cargo run --release --example diabetes_outliers`

mod common;

use common::{load, print_table, random_rows, test_mse};
use metaadd::data::encoding::TargetScale;
use metaadd::data::split::three_way;
use metaadd::experiment::mean_sd;
use metaadd::{FitParams, Task, Weighting};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEEDS: u64 = 5;
const OUTLIER_SHARE: f64 = 0.2;

fn main() -> anyhow::Result<()> {
    let data = load("diabetes.csv", "target")?;
    let params = FitParams::new(Task::Regression)
        // Targets are standardised here with the clean meta set, as in the paper's protocol.
        .standardize_target(false)
        .lambda(0.02)
        .iterations(1000);
    let methods = [
        "MAM (K = 5)",
        "uniform weights",
        "uniform, clean targets (reference)",
    ];
    let mut mse = vec![Vec::new(); methods.len()];
    let mut selected = vec![Vec::new(); methods.len()];
    let (mut w_out, mut w_clean) = (Vec::new(), Vec::new());
    for seed in 0..SEEDS {
        let (train, meta, test) = three_way(&data, 0.2, 0.2, false, seed)?;
        // Standardise with the clean meta set, then corrupt.
        let scale = TargetScale::fit(meta.y())?;
        let clean = train.with_targets(scale.encode(train.y()))?;
        let mut rng = StdRng::seed_from_u64(100 + seed);
        let mut y = clean.y().to_vec();
        let outliers = random_rows(y.len(), OUTLIER_SHARE, &mut rng);
        for &i in &outliers {
            y[i] = rng.random_range(5.0..10.0);
        }
        let corrupted = clean.with_targets(y)?;
        let meta = meta.with_targets(scale.encode(meta.y()))?;

        let fits = [
            params.fit(&corrupted, &meta)?,
            params
                .clone()
                .weighting(Weighting::Uniform)
                .fit(&corrupted, &meta)?,
            params
                .clone()
                .weighting(Weighting::Uniform)
                .fit(&clean, &meta)?,
        ];
        for (k, fit) in fits.iter().enumerate() {
            mse[k].push(test_mse(&fit.model, scale, &test)?);
            selected[k].push(fit.model.additive().selected_features()?.len() as f64);
        }
        let weights = fits[0].model.sample_weights(&corrupted)?;
        let mean_of = |rows: &mut dyn Iterator<Item = usize>| {
            let w: Vec<f64> = rows.map(|i| weights[i]).collect();
            w.iter().sum::<f64>() / w.len() as f64
        };
        w_out.push(mean_of(&mut outliers.iter().copied()));
        w_clean.push(mean_of(
            &mut (0..weights.len()).filter(|i| !outliers.contains(i)),
        ));
    }
    println!(
        "diabetes: {} rows, 10 features; 60/20/20 train/meta/test; {:.0}% of training targets \
         replaced by gross outliers; {SEEDS} seeds\n",
        data.n_samples(),
        100.0 * OUTLIER_SHARE
    );
    let rows: Vec<Vec<String>> = methods
        .iter()
        .enumerate()
        .map(|(k, m)| vec![m.to_string(), mean_sd(&mse[k], 0), mean_sd(&selected[k], 1)])
        .collect();
    print_table(
        &["method", "test MSE (clean targets)", "selected features"],
        &rows,
    );
    println!(
        "\nMAM's mean learned weight: outliers {}, clean rows {}",
        mean_sd(&w_out, 3),
        mean_sd(&w_clean, 3)
    );
    Ok(())
}
