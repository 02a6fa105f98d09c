//! Training-loop contracts: parameter validation, divergence detection, classification fits.

use metaadd::data::synthetic::{
    ClassificationCorruption, ClassificationProtocol, RegressionNoise, RegressionProtocol,
};
use metaadd::{evaluate as metrics, Dataset, Error, FitParams, HypergradMode, Loss, Task, Trainer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn small_regression() -> metaadd::data::synthetic::Splits {
    RegressionProtocol::new(RegressionNoise::B)
        .n(100)
        .n_features(8)
        .generate(0)
        .unwrap()
}

#[test]
fn bad_settings_are_refused_by_name() {
    let s = small_regression();
    let cases: [(FitParams, &str); 7] = [
        (
            FitParams::new(Task::Regression)
                .k(3)
                .hypergradient(HypergradMode::Truncated(4)),
            "hypergradient",
        ),
        (FitParams::new(Task::Regression).lambda(-1.0), "lambda"),
        (FitParams::new(Task::Regression).k(0), "k"),
        (FitParams::new(Task::Regression).eta(Some(0.0)), "eta"),
        (
            FitParams::new(Task::Regression).loss(Some(Loss::Logistic)),
            "loss",
        ),
        (FitParams::new(Task::Multiclass { classes: 1 }), "task"),
        (
            FitParams::new(Task::Regression).train_batch(Some(0)),
            "train_batch",
        ),
    ];
    for (params, name) in cases {
        match params.fit(&s.train, &s.meta) {
            Err(Error::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{name}: expected a parameter error, got {other:?}"),
        }
    }
}

#[test]
fn mismatched_meta_features_and_bad_labels_are_errors() {
    let s = small_regression();
    let renamed = s
        .meta
        .clone()
        .with_feature_names((0..8).map(|j| format!("z{j}")).collect())
        .unwrap();
    let err = FitParams::new(Task::Regression)
        .fit(&s.train, &renamed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("meta set features"), "{err}");
    // Real-valued targets are not binary labels; the error names the set and the row.
    let err = FitParams::new(Task::Binary)
        .fit(&s.train, &s.meta)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("training set") && err.contains("row 2") && err.contains("one more than"),
        "{err}"
    );
}

#[test]
fn divergence_stops_with_the_iteration_and_quantity() {
    let s = small_regression();
    let err = FitParams::new(Task::Regression)
        .eta(Some(1e3))
        .iterations(200)
        .fit(&s.train, &s.meta)
        .unwrap_err();
    match err {
        Error::NonFinite {
            iteration,
            quantity,
        } => {
            assert!(iteration < 200);
            println!("diverged at iteration {iteration}: {quantity}");
            assert!(!quantity.is_empty());
        }
        other => panic!("expected divergence, got {other:?}"),
    }
}

#[test]
fn trainer_steps_match_fit() {
    let s = small_regression();
    let params = FitParams::new(Task::Regression)
        .k(2)
        .iterations(15)
        .hidden(10);
    let fit = params.fit(&s.train, &s.meta).unwrap();
    let mut trainer = Trainer::new(&params, &s.train, &s.meta).unwrap();
    let stepped: Vec<_> = (0..15).map(|_| trainer.step().unwrap()).collect();
    assert_eq!(stepped, fit.history);
    assert_eq!(trainer.iterations_done(), 15);
}

fn labels(data: &Dataset) -> Vec<usize> {
    data.y().iter().map(|&y| y as usize).collect()
}

#[test]
fn binary_classification_with_flipped_labels_beats_chance_clearly() {
    let splits = ClassificationProtocol::new(ClassificationCorruption::default().flip(0.15))
        .n(400)
        .n_features(6)
        .generate(3)
        .unwrap();
    let fit = FitParams::new(Task::Binary)
        .k(2)
        .lambda(0.005)
        .iterations(400)
        .seed(2)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    let model = fit.model.additive();
    let x = candle_core::Tensor::from_vec(
        splits.test.x().to_vec(),
        (400, 6),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let predicted = model.class_indices(&x).unwrap();
    let acc = metrics::accuracy(&predicted, &labels(&splits.test));
    println!("binary accuracy {acc:.3}");
    assert!(acc > 0.8, "accuracy {acc}");
    let selected = model.selected_features().unwrap();
    assert!(
        selected.contains(&0) && selected.contains(&1),
        "{selected:?}"
    );
}

#[test]
fn multiclass_fit_predicts_probabilities_that_sum_to_one() {
    // Three classes from the regression signal's terciles.
    let s = RegressionProtocol::new(RegressionNoise::Gaussian)
        .n(300)
        .n_features(8)
        .generate(1)
        .unwrap();
    let to_class = |d: &Dataset| {
        d.with_targets(
            d.y()
                .iter()
                .map(|&y| {
                    if y < -0.5 {
                        0.0
                    } else if y < 0.5 {
                        1.0
                    } else {
                        2.0
                    }
                })
                .collect(),
        )
        .unwrap()
    };
    let (train, meta, test) = (to_class(&s.train), to_class(&s.meta), to_class(&s.test));
    let fit = FitParams::new(Task::Multiclass { classes: 3 })
        .k(2)
        .lambda(0.002)
        .iterations(300)
        .fit(&train, &meta)
        .unwrap();
    let x = candle_core::Tensor::from_vec(test.x().to_vec(), (300, 8), &candle_core::Device::Cpu)
        .unwrap();
    let proba = fit.model.predict_proba(&x).unwrap();
    let sums = proba.sum(1).unwrap().to_vec1::<f32>().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    let predicted = fit.model.additive().class_indices(&x).unwrap();
    let f1 = metrics::macro_f1(&predicted, &labels(&test), 3);
    println!("multiclass macro-F1 {f1:.3}");
    assert!(f1 > 0.6, "macro-F1 {f1}");
}

/// The largest difference between two models' spline coefficients (f64).
fn largest_coefficient_difference(
    a: &metaadd::MetaAdditiveModel,
    b: &metaadd::MetaAdditiveModel,
) -> f64 {
    let beta = |m: &metaadd::MetaAdditiveModel| {
        let beta = &m.additive().coefficients().beta;
        beta.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    };
    beta(a)
        .iter()
        .zip(&beta(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A fit whose products read the sparse B-spline design, two-pass or with fused steps (with
/// mini-batches, which select its rows), is the dense fit to rounding: the same selected
/// features and coefficients within 1e-9 in f64; the setting is kept in the model file, and
/// where the sparse form cannot run it is refused by name.
#[test]
fn sparse_design_trains_the_dense_model() {
    use metaadd::design::DesignStorage;
    let s = small_regression();
    let params = FitParams::new(Task::Regression)
        .dtype(candle_core::DType::F64)
        .basis(metaadd::BasisSpec::bspline(8))
        .train_batch(Some(64))
        .iterations(30);
    let fit = |design: DesignStorage| {
        params
            .clone()
            .design(design)
            .fit(&s.train, &s.meta)
            .unwrap()
            .model
    };
    let dense = fit(DesignStorage::Dense);
    for sparse in [fit(DesignStorage::Sparse), fit(DesignStorage::Fused)] {
        let diff = largest_coefficient_difference(&dense, &sparse);
        let design = sparse.params().design;
        assert!(
            diff <= 1e-9,
            "{design}: largest coefficient difference {diff:e}"
        );
        assert_eq!(
            dense.additive().selected_features().unwrap(),
            sparse.additive().selected_features().unwrap(),
            "{design}"
        );
    }
    let fused = fit(DesignStorage::Fused);
    let sparse = fit(DesignStorage::Sparse);
    let path =
        std::env::temp_dir().join(format!("metaadd-design-{}.safetensors", std::process::id()));
    sparse.save(&path).unwrap();
    let loaded = metaadd::MetaAdditiveModel::load(&path, &candle_core::Device::Cpu).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.params().design, DesignStorage::Sparse);
    fused.save(&path).unwrap();
    let loaded = metaadd::MetaAdditiveModel::load(&path, &candle_core::Device::Cpu).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.params().design, DesignStorage::Fused);

    let bernstein = params
        .clone()
        .basis(metaadd::BasisSpec::bernstein(4))
        .design(DesignStorage::Sparse);
    let err = bernstein.fit(&s.train, &s.meta).unwrap_err().to_string();
    assert!(err.contains("design") && err.contains("Bernstein"), "{err}");
}

#[test]
fn exact_recompute_trains_the_same_model_as_exact() {
    let s = small_regression();
    let params = FitParams::new(Task::Regression)
        .dtype(candle_core::DType::F64)
        .iterations(30);
    let exact = params.fit(&s.train, &s.meta).unwrap().model;
    let recompute = params
        .clone()
        .hypergradient(HypergradMode::ExactRecompute)
        .fit(&s.train, &s.meta)
        .unwrap()
        .model;
    let diff = largest_coefficient_difference(&exact, &recompute);
    assert!(diff <= 1e-10, "largest coefficient difference {diff:e}");
    assert_eq!(
        recompute.params().hypergradient,
        HypergradMode::ExactRecompute
    );

    // The mode is kept in the model file.
    let path =
        std::env::temp_dir().join(format!("metaadd-mode-{}.safetensors", std::process::id()));
    recompute.save(&path).unwrap();
    let loaded = metaadd::MetaAdditiveModel::load(&path, &candle_core::Device::Cpu).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.params().hypergradient, HypergradMode::ExactRecompute);
}

#[test]
fn implicit_mode_trains_and_refuses_an_unsymmetric_setting() {
    let s = small_regression();
    let params = FitParams::new(Task::Regression)
        .hypergradient(HypergradMode::Implicit)
        .ridge(0.5)
        .learning_rate(1e-2)
        .iterations(60);
    let fit = params.fit(&s.train, &s.meta).unwrap();
    let (first, last) = (fit.history[0], fit.history[59]);
    println!(
        "implicit training: meta loss {} → {}",
        first.meta_loss, last.meta_loss
    );
    assert!(
        last.meta_loss < 0.9 * first.meta_loss,
        "{first:?} → {last:?}"
    );
    assert!(fit.history.iter().all(|m| m.hypergrad_norm.is_finite()));

    let err = params
        .normalize_weights(true)
        .fit(&s.train, &s.meta)
        .unwrap_err();
    assert!(err.to_string().contains("detach_weight_input"), "{err}");
}

#[test]
fn resume_refuses_other_data_and_files_without_optimiser_state() {
    let s = small_regression();
    let params = FitParams::new(Task::Regression).k(2);
    let mut trainer = Trainer::new(&params, &s.train, &s.meta).unwrap();
    trainer.step().unwrap();
    let model = trainer.model().unwrap();
    assert_eq!(model.optimizer_state().map(|o| o.steps), Some(1));
    // Other training rows give another basis.
    let other = RegressionProtocol::new(RegressionNoise::A)
        .n(s.train.n_samples())
        .n_features(s.train.n_features())
        .generate(99)
        .unwrap();
    let e = Trainer::resume(&model, &other.train, &s.meta)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("basis"), "{e}");
    // A file as written before the optimiser state was kept: the same model without the
    // `optimizer.*` tensors and their metadata key.
    let dir = std::env::temp_dir().join(format!("metaadd-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (full, stripped) = (dir.join("full.safetensors"), dir.join("old.safetensors"));
    model.save(&full).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    assert!(metadata.remove("optimizer_steps").is_some());
    let kept: Vec<(String, safetensors::tensor::TensorView)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("optimizer."))
        .collect();
    std::fs::write(
        &stripped,
        safetensors::serialize(kept, Some(metadata)).unwrap(),
    )
    .unwrap();
    let old = metaadd::MetaAdditiveModel::load(&stripped, &candle_core::Device::Cpu).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(old.optimizer_state().is_none());
    let e = Trainer::resume(&old, &s.train, &s.meta)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("no optimiser state"), "{e}");
}
