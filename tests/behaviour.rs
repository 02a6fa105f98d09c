//! Statistical behaviour on seeded synthetic data: MAM against uniform weights under outliers,
//! learned weights on corrupted samples, and variable selection.

use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol, SpamProtocol};
use metaadd::{evaluate as metrics, Dataset, FitParams, MetaAdditiveModel, Task, Weighting};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Predictions in the target's units.
fn predictions(model: &MetaAdditiveModel, data: &Dataset) -> Vec<f64> {
    model.predict_values(data).unwrap()
}

fn noise_b_params() -> FitParams {
    FitParams::new(Task::Regression)
        .k(3)
        .lambda(0.02)
        .iterations(600)
        .seed(3)
}

#[test]
fn mam_halves_the_test_error_of_uniform_weights_under_noise_b() {
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(600)
        .n_features(12)
        .generate(21)
        .unwrap();
    let mam = noise_b_params().fit(&splits.train, &splits.meta).unwrap();
    let uniform = noise_b_params()
        .weighting(Weighting::Uniform)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    let test = &splits.test;
    let mse_mam = metrics::mse(&predictions(&mam.model, test), test.y());
    let mse_uniform = metrics::mse(&predictions(&uniform.model, test), test.y());
    println!("noise B test MSE: MAM {mse_mam:.4}, uniform {mse_uniform:.4}");
    assert!(
        mse_mam < 0.5 * mse_uniform,
        "MAM {mse_mam} is not below half of uniform {mse_uniform}"
    );

    // The learned weights at the final fit: outliers (the 20% component at +20) get less.
    let model = &mam.model;
    let train = &splits.train;
    let weights = model.sample_weights(train).unwrap();
    let mean = |outlier: bool| {
        let w: Vec<f64> = weights
            .iter()
            .zip(&splits.corrupted)
            .filter(|(_, &c)| c == outlier)
            .map(|(w, _)| *w)
            .collect();
        w.iter().sum::<f64>() / w.len() as f64
    };
    let (w_out, w_clean) = (mean(true), mean(false));
    println!("mean weight: outliers {w_out:.4}, clean {w_clean:.4}");
    assert!(
        w_out < 0.5 * w_clean,
        "outlier weight {w_out} is not below half of clean weight {w_clean}"
    );
}

#[test]
fn spam_design_recovers_the_four_true_features() {
    let splits = SpamProtocol::new()
        .n(800)
        .n_features(20)
        .generate(5)
        .unwrap();
    let fit = FitParams::new(Task::Regression)
        .k(1)
        .lambda(0.15)
        .iterations(800)
        .seed(1)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    let selected = fit.model.additive().selected_features().unwrap();
    println!("selected {selected:?}");
    for j in 0..4 {
        assert!(
            selected.contains(&j),
            "true feature {j} not selected: {selected:?}"
        );
    }
    let false_positives = selected.iter().filter(|&&j| j >= 4).count();
    assert!(
        false_positives <= 2,
        "{false_positives} false positives: {selected:?}"
    );
}

#[test]
fn same_seed_gives_the_same_model() {
    let splits = RegressionProtocol::new(RegressionNoise::A)
        .n(200)
        .n_features(9)
        .generate(4)
        .unwrap();
    let params = noise_b_params().iterations(40).train_batch(Some(64));
    let a = params.fit(&splits.train, &splits.meta).unwrap();
    let b = params.fit(&splits.train, &splits.meta).unwrap();
    let c = params
        .clone()
        .seed(4)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    let pa = predictions(&a.model, &splits.test);
    assert_eq!(pa, predictions(&b.model, &splits.test));
    assert_ne!(pa, predictions(&c.model, &splits.test));
    assert_eq!(a.history, b.history);
}

/// The fixed-weight baselines of docs/design.md §6.2 down-weight the outliers of noise B as designed: lower
/// weight on corrupted rows and a lower test error than uniform weights; their weights are the
/// fixed function, also when read back from the model.
#[test]
fn fixed_weight_baselines_down_weight_outliers_under_noise_b() {
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(400)
        .n_features(10)
        .generate(5)
        .unwrap();
    let test = &splits.test;
    let fit = |w: Weighting| {
        noise_b_params()
            .weighting(w)
            .iterations(400)
            .fit(&splits.train, &splits.meta)
            .unwrap()
            .model
    };
    let uniform = fit(Weighting::Uniform);
    let mse_uniform = metrics::mse(&predictions(&uniform, test), test.y());
    for w in [Weighting::Huber(0.5), Weighting::Tilted(-1.0)] {
        let model = fit(w);
        let mse = metrics::mse(&predictions(&model, test), test.y());
        let weights = model.sample_weights(&splits.train).unwrap();
        let mean = |outlier: bool| {
            let v: Vec<f64> = weights
                .iter()
                .zip(&splits.corrupted)
                .filter(|(_, &c)| c == outlier)
                .map(|(&w, _)| w)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        println!(
            "{w}: test MSE {mse:.4} (uniform {mse_uniform:.4}), mean weight outliers {:.3}, clean {:.3}",
            mean(true),
            mean(false)
        );
        assert!(
            mse < 0.5 * mse_uniform,
            "{w}: {mse} vs uniform {mse_uniform}"
        );
        assert!(mean(true) < 0.5 * mean(false), "{w}");
        assert_eq!(model.params().weighting, w);
        // The weighting survives the model file.
        let path = std::env::temp_dir().join(format!(
            "metaadd-weighting-{}-{}.safetensors",
            std::process::id(),
            w
        ));
        model.save(&path).unwrap();
        let loaded = metaadd::MetaAdditiveModel::load(&path, &candle_core::Device::Cpu).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.params().weighting, w);
        assert_eq!(
            loaded.weights(&[0.0, 2.0]).unwrap(),
            model.weights(&[0.0, 2.0]).unwrap()
        );
    }
    // Uniform weights read back as 1, not as the untrained weight net's curve.
    let ones = uniform.weights(&[0.0, 3.0, 100.0]).unwrap();
    assert_eq!(ones, vec![1.0; 3]);
}

/// The λ path on the paper's design: it passes through the exact support of the 8 true features,
/// and the λ it picks (smallest meta loss) keeps all of them. (Picked by meta loss alone, λ is
/// small and selects most noise features too: the shrinkage of a larger λ costs more meta loss
/// than the noise features do.)
#[test]
fn lambda_path_passes_through_the_true_support() {
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(500)
        .n_features(20)
        .generate(11)
        .unwrap();
    let path = metaadd::path::PathParams::new(noise_b_params().iterations(80))
        .lambdas(12)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    let supports: Vec<Vec<usize>> = path
        .group_norms
        .iter()
        .map(|g| (0..g.len()).filter(|&j| g[j] > 0.0).collect())
        .collect();
    println!(
        "λ path: active groups {:?}, meta losses {:?}, refit scores {:?}, best index {}",
        supports.iter().map(Vec::len).collect::<Vec<_>>(),
        path.meta_losses,
        path.scores,
        path.best
    );
    assert!(supports[0].is_empty(), "λ_max must zero every group");
    assert!(
        supports.contains(&splits.true_features),
        "no λ selects exactly the true features"
    );
    // Chosen by the relaxed refit: every true feature and at most one false one.
    let selected = path.model.additive().selected_features().unwrap();
    assert!(splits.true_features.iter().all(|j| selected.contains(j)));
    assert!(
        selected.len() <= splits.true_features.len() + 1,
        "{selected:?}"
    );
    let min = path.scores.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(path.scores[path.best], min);
}

#[test]
fn a_decreasing_weight_curve_down_weights_outliers_and_survives_the_model_file() {
    use metaadd::weightnet::WeightCurve;
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(600)
        .n_features(12)
        .generate(21)
        .unwrap();
    let test = &splits.test;
    let free = noise_b_params().fit(&splits.train, &splits.meta).unwrap();
    let monotone = noise_b_params()
        .weight_curve(WeightCurve::Decreasing)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    let uniform = noise_b_params()
        .weighting(Weighting::Uniform)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    let mse = |m: &MetaAdditiveModel| metrics::mse(&predictions(m, test), test.y());
    let (free_mse, monotone_mse, uniform_mse) =
        (mse(&free.model), mse(&monotone.model), mse(&uniform.model));
    println!(
        "noise B test MSE: free curve {free_mse:.4}, decreasing curve {monotone_mse:.4}, uniform {uniform_mse:.4}"
    );
    assert!(
        monotone_mse < 0.5 * uniform_mse,
        "{monotone_mse} vs uniform {uniform_mse}"
    );
    assert!(
        monotone_mse < 1.5 * free_mse,
        "{monotone_mse} vs free {free_mse}"
    );
    assert!(model_normalises(&monotone.model));
    // The weights fall with the loss (normalised, as a monotone curve's are by default), and
    // the model file keeps the curve.
    let model = &monotone.model;
    let bytes = model.to_bytes().unwrap();
    let back = MetaAdditiveModel::from_bytes(&bytes, &metaadd::candle_core::Device::Cpu).unwrap();
    assert_eq!(back.params().weight_curve, WeightCurve::Decreasing);
    let losses = model.sample_losses(&splits.train).unwrap();
    let weights = back.sample_weights(&splits.train).unwrap();
    assert_eq!(weights, model.sample_weights(&splits.train).unwrap());
    let mut pairs: Vec<(f64, f64)> = losses.into_iter().zip(weights).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(pairs.windows(2).all(|p| p[1].1 <= p[0].1 + 1e-7));
    let corrupted_mean = |flag: bool| {
        let w: Vec<f64> = model
            .sample_weights(&splits.train)
            .unwrap()
            .into_iter()
            .zip(&splits.corrupted)
            .filter(|(_, &c)| c == flag)
            .map(|(w, _)| w)
            .collect();
        w.iter().sum::<f64>() / w.len() as f64
    };
    assert!(corrupted_mean(true) < 0.5 * corrupted_mean(false));
}

fn model_normalises(model: &MetaAdditiveModel) -> bool {
    model.params().resolved_normalize_weights()
}
