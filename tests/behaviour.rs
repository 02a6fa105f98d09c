//! Statistical behaviour on seeded synthetic data: MAM against uniform weights under outliers,
//! learned weights on corrupted samples, and variable selection.

use candle_core::DType;
use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol, SpamProtocol};
use metaadd::{metrics, AdditiveModel, Dataset, FitParams, Task, Weighting};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn predictions(model: &AdditiveModel, data: &Dataset) -> Vec<f64> {
    model
        .predict_dataset(data)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
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
    let mse_mam = metrics::mse(&predictions(mam.model.additive(), test), test.y());
    let mse_uniform = metrics::mse(&predictions(uniform.model.additive(), test), test.y());
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
    let pa = predictions(a.model.additive(), &splits.test);
    assert_eq!(pa, predictions(b.model.additive(), &splits.test));
    assert_ne!(pa, predictions(c.model.additive(), &splits.test));
    assert_eq!(a.history, b.history);
}
