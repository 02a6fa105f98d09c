//! Class imbalance and small meta sets: the class-balanced meta objective, the balanced meta
//! hold-out, the warnings about small meta sets and empty models, and λ selection on a flat
//! meta error.

use metaadd::data::synthetic::{ClassificationCorruption, ClassificationProtocol, Splits};
use metaadd::evaluate::balanced_accuracy;
use metaadd::params::MetaObjective;
use metaadd::{FitParams, Task, Weighting};

/// The circle design with `share` of class 1 in the training set, and a meta set drawn like
/// it (the same share of class 1): the setting in which a plain mean meta loss has no reason
/// to care about the rare class.
fn imbalanced(share: f64, seed: u64) -> Splits {
    let mut splits =
        ClassificationProtocol::new(ClassificationCorruption::default().imbalance(share))
            .n(400)
            .n_features(4)
            .generate(seed)
            .unwrap();
    let y = splits.meta.y();
    let ones: Vec<usize> = (0..y.len()).filter(|&i| y[i] == 1.0).collect();
    let zeros: Vec<usize> = (0..y.len()).filter(|&i| y[i] == 0.0).collect();
    let keep_ones = ((zeros.len() as f64) * share / (1.0 - share)).round() as usize;
    let mut rows: Vec<usize> = zeros
        .into_iter()
        .chain(ones.into_iter().take(keep_ones))
        .collect();
    rows.sort_unstable();
    splits.meta = splits.meta.select(&rows).unwrap();
    splits
}

fn test_balanced_accuracy(params: &FitParams, splits: &Splits) -> f64 {
    let fit = params.fit(&splits.train, &splits.meta).unwrap();
    let predicted: Vec<usize> = fit
        .model
        .predict_values(&splits.test)
        .unwrap()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let truth: Vec<usize> = splits.test.y().iter().map(|&v| v as usize).collect();
    balanced_accuracy(&predicted, &truth, 2)
}

#[test]
fn balanced_meta_objective_and_class_aware_net_lift_the_rare_class() {
    // 5% of class 1 in both the training and the meta set, three seeds: the test set's
    // balanced accuracy, averaged.
    let (mut uniform, mut mean, mut balanced, mut aware) = (0.0, 0.0, 0.0, 0.0);
    for seed in 0..3 {
        let splits = imbalanced(0.05, seed);
        let base = FitParams::new(Task::Binary)
            .k(3)
            .lambda(0.005)
            .iterations(300)
            .seed(seed);
        let u = test_balanced_accuracy(&base.clone().weighting(Weighting::Uniform), &splits);
        let m = test_balanced_accuracy(&base.clone().meta_objective(MetaObjective::Mean), &splits);
        let b = test_balanced_accuracy(&base, &splits);
        let c = test_balanced_accuracy(&base.clone().class_aware(true), &splits);
        println!("seed {seed}: class-aware MAM {c:.3}");
        println!("seed {seed}: uniform {u:.3}, MAM mean meta loss {m:.3}, MAM balanced {b:.3}");
        (uniform, mean, balanced) = (uniform + u / 3.0, mean + m / 3.0, balanced + b / 3.0);
        aware += c / 3.0;
    }
    println!(
        "mean of 3 seeds: uniform {uniform:.3}, MAM mean {mean:.3}, MAM balanced {balanced:.3}, \
         class-aware MAM {aware:.3}"
    );
    assert!(
        aware >= uniform + 0.05,
        "class-aware {aware} vs uniform {uniform}"
    );
    assert!(
        balanced >= mean + 0.02,
        "balanced {balanced} vs mean {mean}"
    );
    assert!(
        balanced >= uniform + 0.01,
        "balanced {balanced} vs uniform {uniform}"
    );
}

#[test]
fn classification_defaults_balance_the_meta_loss_and_normalise_the_weights() {
    let binary = FitParams::new(Task::Binary);
    assert_eq!(binary.resolved_meta_objective(), MetaObjective::Balanced);
    assert!(binary.resolved_normalize_weights());
    let regression = FitParams::new(Task::Regression);
    assert_eq!(regression.resolved_meta_objective(), MetaObjective::Mean);
    assert!(!regression.resolved_normalize_weights());
    // A task set after construction (as a prepared fit does) moves the defaults with it.
    let later = FitParams {
        task: Task::Multiclass { classes: 3 },
        ..FitParams::default()
    };
    assert_eq!(later.resolved_meta_objective(), MetaObjective::Balanced);
    // A balanced meta loss has no classes to balance in regression.
    let err = regression
        .meta_objective(MetaObjective::Balanced)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("meta_objective"), "{err}");
    // The model file records what was used, and a fit's mean weight is that of the weights
    // the step used (normalised: 1).
    let splits = imbalanced(0.2, 0);
    let fit = FitParams::new(Task::Binary)
        .iterations(5)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    let params = fit.model.params();
    assert_eq!(params.normalize_weights, Some(true));
    assert_eq!(params.meta_objective, Some(MetaObjective::Balanced));
    let bytes = fit.model.to_bytes().unwrap();
    let back =
        metaadd::MetaAdditiveModel::from_bytes(&bytes, &metaadd::candle_core::Device::Cpu).unwrap();
    assert_eq!(back.params().meta_objective, Some(MetaObjective::Balanced));
    for m in &fit.history {
        assert!((m.mean_weight - 1.0).abs() < 1e-6, "{}", m.mean_weight);
    }
}

#[test]
fn small_meta_sets_and_empty_models_are_warned_about() {
    let splits = imbalanced(0.2, 1);
    // 30 meta rows, 4 of them class 1.
    let y = splits.meta.y();
    let (zeros, ones): (Vec<usize>, Vec<usize>) = (0..y.len()).partition(|&i| y[i] == 0.0);
    let rows: Vec<usize> = zeros[..26].iter().chain(&ones[..4]).copied().collect();
    let meta = splits.meta.select(&rows).unwrap();
    let ones = 4;
    let fit = FitParams::new(Task::Binary)
        .iterations(5)
        .fit(&splits.train, &meta)
        .unwrap();
    let all = fit.warnings.join("\n");
    assert!(all.contains("the meta set has 30 rows"), "{all}");
    assert!(all.contains(&format!("class 1 has {ones}")), "{all}");
    assert!(!all.contains("selects no feature"), "{all}");
    // λ far above λ_max: nothing selected, and the fit says so.
    let empty = FitParams::new(Task::Binary)
        .lambda(100.0)
        .iterations(5)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    assert!(empty
        .model
        .additive()
        .selected_features()
        .unwrap()
        .is_empty());
    let all = empty.warnings.join("\n");
    assert!(all.contains("selects no feature"), "{all}");
    assert!(!all.contains("meta set has"), "{all}");
}

#[test]
fn a_flat_meta_error_chooses_by_meta_loss_not_the_empty_model() {
    use metaadd::path::{PathParams, SelectBy};
    // A meta set of class 0 only: every λ's refit classifies it perfectly, the empty model
    // included, so the error rate is 0 all along the path and only the meta loss can choose.
    let splits = imbalanced(0.3, 2);
    let zeros: Vec<usize> = (0..splits.meta.n_samples())
        .filter(|&i| splits.meta.y()[i] == 0.0)
        .collect();
    let meta = splits.meta.select(&zeros).unwrap();
    let path = PathParams::new(FitParams::new(Task::Binary).iterations(20))
        .lambdas(6)
        .select_by(SelectBy::Error)
        .final_iterations(0)
        .fit(&splits.train, &meta)
        .unwrap();
    assert_eq!(path.scores[0], 0.0, "{:?}", path.scores);
    assert_ne!(
        path.best, 0,
        "the top of the path (the empty model) was chosen"
    );
    assert!(!path
        .model
        .additive()
        .selected_features()
        .unwrap()
        .is_empty());
}
