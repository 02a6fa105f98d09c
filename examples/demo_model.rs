//! Loads the shipped demo model (`models/demo-regression.safetensors`, written by
//! `cargo run --release -- demo`) and reads it like a researcher would: selected features with
//! their group norms, the learned weight-vs-loss curve, and test error on fresh data.
//!
//! Run: `cargo run --release --example demo_model`

use candle_core::Device;
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::{evaluate as metrics, MetaAdditiveModel};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/demo-regression.safetensors"
    );
    let model = MetaAdditiveModel::load(path, &Device::Cpu)?;
    let additive = model.additive();
    let params = model.params();
    println!(
        "{}: {} on {} features, K = {}, λ = {}, η = {:.4}",
        path,
        additive.task(),
        additive.feature_names().len(),
        params.k,
        params.lambda,
        model.eta()
    );

    println!("\nselected features (group norm ‖β_j‖):");
    let norms = additive.group_norms()?;
    for j in additive.selected_features()? {
        println!("  {:<4} {:.4}", additive.feature_names()[j], norms[j]);
    }

    println!("\nlearned weight V(ℓ) by training loss ℓ:");
    let losses = [0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 200.0];
    for (l, w) in losses.iter().zip(model.weights(&losses)?) {
        println!("  ℓ = {l:>6.1}  w = {w:.4}");
    }

    let p = additive.feature_names().len();
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(2000)
        .n_features(p)
        .generate(2024)?;
    let pred = model.predict_values(&splits.test)?;
    println!(
        "\ntest MSE on 2000 fresh clean rows: {:.4}",
        metrics::mse(&pred, splits.test.y())
    );

    println!("\nshape function f_1(x) = −2 sin(2x), standardised and centred, on a grid:");
    let grid: Vec<f64> = (0..=8).map(|i| -1.0 + 0.25 * i as f64).collect();
    for (x, f) in grid.iter().zip(additive.shape_function(0, &grid)?) {
        println!("  x = {x:>5.2}  f_1 = {f:>7.4}");
    }
    Ok(())
}
