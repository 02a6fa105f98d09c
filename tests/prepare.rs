//! The library's data path from raw tables: text and numeric class labels, categorical
//! columns, missing values, and fits whose results are in the target's units and do not
//! depend on the meta set when the weights are fixed.

use metaadd::data::table::{Column, Table};
use metaadd::prepare::{CategoricalPolicy, MissingPolicy, Preparation, TaskKind};
use metaadd::{Dataset, FitParams, Scores, Task, Weighting};
use std::path::Path;

fn diabetes() -> Table {
    Table::read_csv(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/diabetes.csv"))
        .expect("diabetes.csv")
}

/// A seeded two-feature classification table: label from a threshold on x plus a city effect.
fn labelled_table(n: usize, labels: &[&str], with_city: bool) -> Table {
    let x: Vec<f64> = (0..n).map(|i| ((i * 37) % n) as f64 / n as f64).collect();
    let z: Vec<f64> = (0..n).map(|i| ((i * 11) % 17) as f64).collect();
    let city: Vec<Option<String>> = (0..n)
        .map(|i| Some(["Oslo", "Rome", "Lima"][i % 3].to_string()))
        .collect();
    let k = labels.len();
    let y: Vec<Option<String>> = (0..n)
        .map(|i| {
            let shift = if with_city { 0.2 * (i % 3) as f64 } else { 0.0 };
            let c = (((x[i] + shift) / 1.4) * k as f64).floor() as usize;
            Some(labels[c.min(k - 1)].to_string())
        })
        .collect();
    let mut columns = vec![
        ("x".to_string(), Column::Numbers(x)),
        ("z".to_string(), Column::Numbers(z)),
    ];
    if with_city {
        columns.push(("city".to_string(), Column::Text(city)));
    }
    columns.push(("label".to_string(), Column::Text(y)));
    Table::from_columns("labelled", columns).expect("table")
}

fn quick() -> FitParams {
    FitParams::default().iterations(40).seed(3).lambda(0.001)
}

#[test]
fn text_labels_binary_fit_and_predict_original_labels() {
    let table = labelled_table(240, &["M", "B"], false);
    let prepared = Preparation::new("label", TaskKind::Binary)
        .meta_fraction(0.25)
        .prepare(&table, None, None, &quick())
        .expect("prepare");
    assert_eq!(prepared.task, Task::Binary);
    // Sorted: B is class 0.
    assert_eq!(
        prepared.encoding.classes().map(|c| c.names()),
        Some(vec!["B".to_string(), "M".to_string()])
    );
    let model = prepared.fit(&quick()).expect("fit").model;
    let rows = model.read_features(&table).expect("features");
    let predicted = model.predict_labels(&rows).expect("labels");
    assert!(predicted.iter().all(|l| l == "M" || l == "B"));
    let truth = model.read_labelled(&table).expect("labelled");
    let Scores::Classification(scores) = model.evaluate(&truth).expect("scores") else {
        panic!("a classifier");
    };
    assert!(scores.accuracy > 0.8, "accuracy {}", scores.accuracy);
    // The model file keeps the text labels.
    let back = metaadd::MetaAdditiveModel::from_bytes(
        &model.to_bytes().expect("bytes"),
        &candle_core::Device::Cpu,
    )
    .expect("load");
    assert_eq!(back.predict_labels(&rows).expect("labels"), predicted);
    // Text labels have no numeric form: predict says so.
    let x = candle_core::Tensor::from_vec(rows.x().to_vec(), (240, 2), &candle_core::Device::Cpu)
        .expect("tensor");
    let err = model.predict(&x).unwrap_err().to_string();
    assert!(err.contains("predict_labels"), "{err}");
    // The first appearance order is available too.
    let first = Preparation::new("label", TaskKind::Binary)
        .label_order(metaadd::data::labels::LabelOrder::FirstAppearance)
        .meta_fraction(0.25)
        .prepare(&table, None, None, &quick())
        .expect("prepare");
    let first_label = match table.column("label").expect("column") {
        Column::Text(v) => v[0].clone().expect("label"),
        Column::Numbers(_) => unreachable!(),
    };
    assert_eq!(
        first.encoding.classes().expect("classes").names()[0],
        first_label
    );
}

#[test]
fn binary_task_refuses_three_labels_naming_them() {
    let table = labelled_table(90, &["a", "b", "c"], false);
    let err = Preparation::new("label", TaskKind::Binary)
        .meta_fraction(0.2)
        .prepare(&table, None, None, &quick())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a, b, c") && err.contains("multiclass"),
        "{err}"
    );
}

#[test]
fn numeric_multiclass_labels_one_two_three() {
    let text = labelled_table(300, &["1", "2", "3"], false);
    // The same labels as numbers.
    let Column::Text(labels) = text.column("label").expect("label").clone() else {
        unreachable!()
    };
    let numbers: Vec<f64> = labels
        .iter()
        .map(|l| l.as_deref().expect("label").parse().expect("number"))
        .collect();
    let table = Table::from_columns(
        "numeric labels",
        vec![
            ("x".into(), text.column("x").expect("x").clone()),
            ("z".into(), text.column("z").expect("z").clone()),
            ("label".into(), Column::Numbers(numbers.clone())),
        ],
    )
    .expect("table");
    let prepared = Preparation::new("label", TaskKind::Multiclass)
        .meta_fraction(0.2)
        .prepare(&table, None, None, &quick())
        .expect("prepare");
    assert_eq!(prepared.task, Task::Multiclass { classes: 3 });
    let model = prepared.fit(&quick()).expect("fit").model;
    let rows = model.read_features(&table).expect("rows");
    let values = model.predict_values(&rows).expect("values");
    assert!(
        values.iter().all(|v| [1.0, 2.0, 3.0].contains(v)),
        "{values:?}"
    );
    // The library path on raw numbers gives labels 1, 2, 3 as well.
    let x: Vec<f64> = rows.x().to_vec();
    let raw = Dataset::new(x, 2, numbers).expect("dataset");
    let direct = FitParams::new(Task::Multiclass { classes: 3 })
        .iterations(10)
        .fit(&raw, &raw)
        .expect("fit")
        .model;
    assert_eq!(
        direct.classes().expect("classes").names(),
        vec!["1", "2", "3"]
    );
    let weights = direct.sample_weights(&raw).expect("weights");
    assert_eq!(weights.len(), 300);
}

#[test]
fn categorical_column_is_one_hot_encoded_and_unknown_levels_are_refused() {
    let table = labelled_table(300, &["no", "yes"], true);
    let prepared = Preparation::new("label", TaskKind::Binary)
        .meta_fraction(0.2)
        .prepare(&table, None, None, &quick())
        .expect("prepare");
    assert_eq!(
        prepared.encoding.feature_names(),
        vec!["x", "z", "city=Lima", "city=Oslo", "city=Rome"]
    );
    let model = prepared.fit(&quick()).expect("fit").model;
    // Through the model file, the levels come back.
    let model = metaadd::MetaAdditiveModel::from_bytes(
        &model.to_bytes().expect("bytes"),
        &candle_core::Device::Cpu,
    )
    .expect("load");
    let rows = model.read_features(&table).expect("rows");
    assert_eq!(rows.n_features(), 5);
    let other = Table::from_columns(
        "new rows",
        vec![
            ("x".into(), Column::Numbers(vec![0.5])),
            ("z".into(), Column::Numbers(vec![1.0])),
            ("city".into(), Column::Text(vec![Some("Paris".into())])),
        ],
    )
    .expect("table");
    let err = model.read_features(&other).unwrap_err().to_string();
    assert!(
        err.contains("new rows: row 0, column `city`: `Paris` is not a level"),
        "{err}"
    );
    // Dropped on request, with a warning naming the column.
    let dropped = Preparation::new("label", TaskKind::Binary)
        .categorical_policy(CategoricalPolicy::Drop)
        .meta_fraction(0.2)
        .prepare(&table, None, None, &quick())
        .expect("prepare");
    assert_eq!(dropped.encoding.feature_names(), vec!["x", "z"]);
    assert!(
        dropped
            .warnings
            .iter()
            .any(|w| w.contains("`city`") && w.contains("dropped")),
        "{:?}",
        dropped.warnings
    );
}

#[test]
fn missing_values_are_an_error_or_their_rows_are_dropped() {
    let mut x: Vec<f64> = (0..60).map(|i| i as f64).collect();
    x[7] = f64::NAN;
    let y: Vec<f64> = (0..60).map(|i| (i as f64 * 0.37).sin()).collect();
    let table = Table::from_columns(
        "gaps",
        vec![
            ("x".into(), Column::Numbers(x)),
            ("y".into(), Column::Numbers(y)),
        ],
    )
    .expect("table");
    let err = Preparation::new("y", TaskKind::Regression)
        .meta_fraction(0.2)
        .prepare(&table, None, None, &quick())
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 7, column `x`: value is missing"), "{err}");
    assert!(err.contains("drop-rows"), "{err}");
    let prepared = Preparation::new("y", TaskKind::Regression)
        .missing(MissingPolicy::DropRows)
        .meta_fraction(0.2)
        .prepare(&table, None, None, &quick())
        .expect("prepare");
    assert_eq!(prepared.train.n_samples() + prepared.meta.n_samples(), 59);
    assert!(
        prepared.warnings[0].contains("dropped 1 row(s)"),
        "{:?}",
        prepared.warnings
    );
}

#[test]
fn regression_predictions_and_weights_are_in_target_units() {
    let table = diabetes();
    let prepared = Preparation::new("target", TaskKind::Regression)
        .meta_fraction(0.2)
        .prepare(&table, None, None, &quick())
        .expect("prepare");
    let model = prepared.fit(&quick().iterations(100)).expect("fit").model;
    let predicted = model.predict_values(&prepared.train).expect("predict");
    let mean = predicted.iter().sum::<f64>() / predicted.len() as f64;
    // The diabetes target is a disease score around 150 (sd about 77).
    assert!((100.0..200.0).contains(&mean), "mean prediction {mean}");
    let losses = model.sample_losses(&prepared.train).expect("losses");
    let typical = losses.iter().sum::<f64>() / losses.len() as f64;
    assert!(typical < 5.0, "losses on the fitted scale, mean {typical}");
    let weights = model.sample_weights(&prepared.train).expect("weights");
    assert!(weights.iter().any(|&w| w < 0.999), "weights are not all 1");
}

/// Uniform and fixed weightings solve a problem that does not involve the meta set: two meta
/// sets, the same coefficients to the bit.
#[test]
fn fixed_weightings_do_not_depend_on_the_meta_set() {
    let table = diabetes();
    let (data, _) = Preparation::new("target", TaskKind::Regression)
        .dataset(&table)
        .expect("data");
    let n = data.n_samples();
    let train = data.select(&(0..300).collect::<Vec<_>>()).expect("train");
    let meta_a = data
        .select(&(300..360).collect::<Vec<_>>())
        .expect("meta a");
    let meta_b = data.select(&(360..n).collect::<Vec<_>>()).expect("meta b");
    for weighting in [
        Weighting::Uniform,
        Weighting::Huber(1.0),
        Weighting::Tilted(-0.5),
    ] {
        let params = quick().weighting(weighting);
        let a = params.fit(&train, &meta_a).expect("fit a").model;
        let b = params.fit(&train, &meta_b).expect("fit b").model;
        let beta = |m: &metaadd::MetaAdditiveModel| -> Vec<f32> {
            m.additive()
                .coefficients()
                .beta
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("beta")
        };
        assert_eq!(beta(&a), beta(&b), "{weighting}");
        assert_eq!(a.target_scale(), b.target_scale());
    }
}

#[test]
fn an_empty_table_is_an_error_not_a_panic() {
    let table = Table::from_columns(
        "empty",
        vec![
            ("x".into(), Column::Numbers(vec![])),
            ("y".into(), Column::Numbers(vec![])),
        ],
    )
    .expect("table");
    let err = Preparation::new("y", TaskKind::Regression)
        .meta_fraction(0.2)
        .prepare(&table, None, None, &quick())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no rows"), "{err}");
}

#[test]
fn new_targets_must_still_index_the_labels() {
    let table = labelled_table(60, &["a", "b"], false);
    let (data, _) = Preparation::new("label", TaskKind::Binary)
        .dataset(&table)
        .expect("data");
    let err = data.with_targets(vec![7.0; 60]).unwrap_err().to_string();
    assert!(err.contains("not a class index below 2"), "{err}");
}

/// A level held out entirely by the meta split leaves a constant one-hot feature: the error
/// names it instead of a column index.
#[test]
fn a_level_the_hold_out_took_entirely_is_named() {
    let n = 60;
    let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    let city: Vec<&str> = (0..n)
        .map(|i| {
            if i == 5 {
                "Paris"
            } else {
                ["Oslo", "Rome"][i % 2]
            }
        })
        .collect();
    let y: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
    let table = Table::from_columns(
        "cities",
        vec![
            ("x".into(), Column::Numbers(x)),
            ("city".into(), Column::from_text(&city)),
            ("y".into(), Column::Numbers(y)),
        ],
    )
    .expect("table");
    let mut failures = 0;
    for seed in 0..8 {
        let params = quick().seed(seed);
        let prepared = Preparation::new("y", TaskKind::Regression)
            .meta_fraction(0.5)
            .prepare(&table, None, None, &params)
            .expect("prepare");
        if let Err(e) = prepared.fit(&params) {
            let e = e.to_string();
            assert!(e.contains("feature `city=Paris` is constant"), "{e}");
            failures += 1;
        }
    }
    assert!(failures > 0, "no seed held out the Paris row");
}

#[test]
fn a_hard_hold_out_of_very_few_rows_does_not_panic() {
    let table = labelled_table(40, &["a", "b", "c", "d"], false);
    let result = Preparation::new("label", TaskKind::Multiclass)
        .meta_fraction(0.05)
        .meta_select(metaadd::prepare::MetaSelect::Hard)
        .prepare(&table, None, None, &quick());
    if let Err(e) = result {
        assert!(!e.to_string().contains("18446744073709551615"), "{e}");
    }
}
