//! The experiment runner: small versions of the paper's protocols (the direction of the paper
//! must show), and the resumable results file.

use metaadd::data::synthetic::{ClassificationCorruption, RegressionNoise};
use metaadd::experiment::{Experiment, LambdaChoice, Method, Record, Setting};
use std::path::PathBuf;

fn small(mut experiment: Experiment, settings: Vec<Setting>, methods: Vec<Method>) -> Experiment {
    experiment.settings = settings;
    experiment.methods = methods;
    experiment.lambda = LambdaChoice::Path {
        lambdas: 8,
        min_ratio: 1e-2,
        final_iterations: 400,
    };
    experiment.fit.iterations = 60;
    experiment
}

fn of<'a>(records: &'a [Record], method: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.method == method).collect()
}

#[test]
fn small_paper_regression_mam_beats_uniform_and_finds_the_true_features() {
    let mut experiment = small(
        Experiment::paper_regression(),
        vec![Setting::Regression(RegressionNoise::B)],
        vec![Method::Uniform, Method::Mam(5)],
    );
    experiment.seeds = 2;
    experiment.n = 300;
    experiment.n_features = 10;
    let records = experiment.run(None, |_, _, _| {}).unwrap();
    println!("{}", metaadd::experiment::table(&records));
    for (uniform, mam) in of(&records, "uniform")
        .into_iter()
        .zip(of(&records, "mam(5)"))
    {
        let (u, m) = (uniform.test_mse.unwrap(), mam.test_mse.unwrap());
        // Measured: 0.54 vs 0.0058 and 0.43 vs 0.0047.
        assert!(m < 0.1 * u, "seed {}: MAM {m} vs uniform {u}", mam.seed);
        // The λ path with relaxed refit: all 8 true features, at most one false one.
        assert_eq!(mam.true_positives, Some(8), "{mam:?}");
        assert!(mam.false_positives.unwrap() <= 1, "{mam:?}");
    }
}

#[test]
fn small_paper_classification_mam_beats_uniform_under_imbalance_and_flips() {
    let corruption = ClassificationCorruption::none().imbalance(0.15).flip(0.15);
    let mut experiment = small(
        Experiment::paper_classification(),
        vec![Setting::Circle(corruption)],
        vec![Method::Uniform, Method::Mam(5)],
    );
    experiment.seeds = 3;
    experiment.n = 400;
    experiment.n_features = 6;
    let records = experiment.run(None, |_, _, _| {}).unwrap();
    println!("{}", metaadd::experiment::table(&records));
    let mut gain = 0.0;
    for (uniform, mam) in of(&records, "uniform")
        .into_iter()
        .zip(of(&records, "mam(5)"))
    {
        let (u, m) = (uniform.accuracy.unwrap(), mam.accuracy.unwrap());
        // Measured gains 0.10, 0.095 and 0.053.
        assert!(m > u, "seed {}: MAM {m} vs uniform {u}", mam.seed);
        assert!(mam.macro_f1.unwrap() > uniform.macro_f1.unwrap());
        assert_eq!(mam.true_positives, Some(2));
        gain += (m - u) / 3.0;
    }
    assert!(gain > 0.04, "mean accuracy gain {gain}");
}

/// A scratch file removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        // A results file's description beside it.
        let _ = std::fs::remove_file(self.0.with_extension("json"));
    }
}

fn tiny() -> Experiment {
    let mut experiment = Experiment::paper_regression();
    experiment.settings = vec![Setting::Regression(RegressionNoise::A)];
    experiment.methods = vec![Method::Uniform, Method::Huber(0.5)];
    experiment.seeds = 2;
    experiment.n = 60;
    experiment.n_features = 9;
    experiment.lambda = LambdaChoice::Fixed(0.01);
    experiment.fit.iterations = 5;
    experiment
}

/// Everything but the wall-clock time, which the file keeps to the millisecond, and the
/// warnings, which it does not keep.
fn outcome(r: &Record) -> Record {
    Record {
        seconds: 0.0,
        warnings: Vec::new(),
        ..r.clone()
    }
}

#[test]
fn a_stopped_run_resumes_from_its_results_file() {
    let file = Scratch(std::env::temp_dir().join(format!(
        "metaadd-experiment-resume-{}.csv",
        std::process::id()
    )));
    let _ = std::fs::remove_file(&file.0);
    let first = tiny().run(Some(&file.0), |_, _, _| {}).unwrap();
    assert_eq!(first.len(), 4);
    // 60 meta rows pass; the fits' warnings reach the records (here: none), and the CLI prints
    // them; a 40-row meta set is warned about.
    assert!(first.iter().all(|r| r.warnings.is_empty()), "{first:?}");
    let mut small = tiny();
    small.n = 40;
    small.seeds = 1;
    let warned = small.run(None, |_, _, _| {}).unwrap();
    assert!(
        warned
            .iter()
            .all(|r| r.warnings.iter().any(|w| w.contains("40 rows"))),
        "{warned:?}"
    );
    let text = std::fs::read_to_string(&file.0).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 4, "{text}");
    assert!(lines[0].starts_with("setting,method,seed,"));
    let about = std::fs::read_to_string(file.0.with_extension("json")).unwrap();
    assert!(about.contains("metaadd_experiment") && about.contains("noise A"));

    // Stopped after two fits, in the middle of writing the third line.
    let kept = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[2]);
    std::fs::write(&file.0, format!("{kept}noise A,uniform,1,3.1")).unwrap();
    let mut calls = 0;
    let resumed = tiny()
        .run(Some(&file.0), |_, done, total| {
            calls += 1;
            assert_eq!(total, 4);
            assert_eq!(done, calls);
        })
        .unwrap();
    assert_eq!(calls, 4);
    // Same records (the fits are deterministic), the kept lines untouched, the partial line
    // replaced by whole ones.
    let a: Vec<Record> = first.iter().map(outcome).collect();
    let b: Vec<Record> = resumed.iter().map(outcome).collect();
    assert_eq!(a, b);
    let text = std::fs::read_to_string(&file.0).unwrap();
    assert!(text.starts_with(&kept), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    // The two kept records come back with the times they were written with.
    let written: Vec<f64> = text
        .lines()
        .skip(1)
        .take(2)
        .map(|l| l.split(',').nth(10).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        [resumed[0].seconds, resumed[1].seconds],
        [written[0], written[1]]
    );

    // A rerun has nothing left to fit and returns the same table.
    let again = tiny().run(Some(&file.0), |_, _, _| {}).unwrap();
    assert_eq!(again.iter().map(outcome).collect::<Vec<_>>(), b);
    assert_eq!(std::fs::read_to_string(&file.0).unwrap(), text);
}

#[test]
fn a_results_file_of_another_configuration_is_refused() {
    let file = Scratch(std::env::temp_dir().join(format!(
        "metaadd-experiment-other-{}.csv",
        std::process::id()
    )));
    let _ = std::fs::remove_file(&file.0);
    let mut one = tiny();
    one.seeds = 1;
    one.methods = vec![Method::Uniform];
    one.run(Some(&file.0), |_, _, _| {}).unwrap();
    let before = std::fs::read_to_string(&file.0).unwrap();
    let mut other = one.clone();
    other.fit.learning_rate = 0.01;
    let e = other
        .run(Some(&file.0), |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another configuration") && e.contains("learning_rate 0.01"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&file.0).unwrap(), before);

    std::fs::write(&file.0, "x,y\n1,2\n").unwrap();
    let e = one
        .run(Some(&file.0), |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 1") && e.contains("metaadd experiment results"),
        "{e}"
    );

    let header = before.lines().take(1).collect::<Vec<_>>().join("\n");
    std::fs::write(
        &file.0,
        format!("{header}\nnoise A,uniform,zero,,,,1,1,0,0.01,1.0\n"),
    )
    .unwrap();
    let e = one
        .run(Some(&file.0), |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("seed"), "{e}");
}

#[test]
fn method_lists_are_checked() {
    let mut twice = tiny();
    twice.methods = vec![Method::Uniform, Method::Uniform];
    let e = twice.run(None, |_, _, _| {}).unwrap_err().to_string();
    assert!(e.contains("uniform is listed twice"), "{e}");
    for bad in ["mam", "mam(0)", "huber(-1)", "tilted(x)", "weird"] {
        assert!(bad.parse::<Method>().is_err(), "{bad}");
    }
    for good in ["uniform", "huber(0.5)", "tilted(-1)", "one-step", "mam(20)"] {
        assert_eq!(good.parse::<Method>().unwrap().to_string(), good);
    }
}

#[test]
fn digits_setting_splits_70_10_20_and_moves_training_labels_only() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv");
    let (data, _) = metaadd::data::csv::CsvTable::read(std::path::Path::new(path))
        .unwrap()
        .dataset("target", None)
        .unwrap();
    let mut experiment = Experiment::digits(data.clone());
    assert_eq!(experiment.settings.len(), 2);
    let noisy = &experiment.settings[1];
    assert_eq!(noisy.to_string(), "digits flips 20%");
    let splits = noisy.splits(0, 0, 3).unwrap();
    let n = data.n_samples();
    assert_eq!(splits.test.n_samples(), (0.2 * n as f64).round() as usize);
    assert_eq!(
        splits.train.n_samples() + splits.meta.n_samples() + splits.test.n_samples(),
        n
    );
    let moved = splits.corrupted.iter().filter(|&&c| c).count();
    assert_eq!(
        moved,
        (0.2 * splits.train.n_samples() as f64).round() as usize
    );
    // Every class is in the clean meta set.
    let mut seen = [false; 10];
    splits
        .meta
        .y()
        .iter()
        .for_each(|&y| seen[y as usize] = true);
    assert!(seen.iter().all(|&s| s));

    // A rare pixel (pixel_7_0) misses the training rows of the real protocol's 60% split for
    // seed 1: it is dropped from the three sets, which a fit would otherwise refuse.
    let real = metaadd::experiment::real::corrupted_splits(
        &data,
        metaadd::Task::Multiclass { classes: 10 },
        metaadd::experiment::real::Corruption::Flip { share: 0.2 },
        1,
    )
    .unwrap();
    let names = real.train.feature_names();
    assert!(!names.iter().any(|n| n == "pixel_7_0"), "{names:?}");
    assert!(data.feature_names().iter().any(|n| n == "pixel_7_0"));
    assert_eq!(real.meta.feature_names(), names);
    assert_eq!(real.test.feature_names(), names);
    for (j, name) in names.iter().enumerate() {
        let column = real.train.column(j);
        assert!(column.iter().any(|v| *v != column[0]), "{name} is constant");
    }

    // One quick fit end to end: accuracy and macro-F1, no ground-truth features.
    experiment.settings.truncate(1);
    experiment.methods = vec![Method::Uniform];
    experiment.seeds = 1;
    experiment.lambda = LambdaChoice::Fixed(0.01);
    experiment.fit.iterations = 30;
    let records = experiment.run(None, |_, _, _| {}).unwrap();
    let r = &records[0];
    assert!(
        r.accuracy.unwrap() > 0.5 && r.macro_f1.unwrap() > 0.5,
        "{r:?}"
    );
    assert_eq!(
        (r.test_mse, r.true_positives, r.false_positives),
        (None, None, None)
    );
}

fn table_of(file: &str, target: &str, kind: metaadd::prepare::TaskKind) -> metaadd::Dataset {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data")
        .join(file);
    metaadd::prepare::Preparation::new(target, kind)
        .dataset(&metaadd::Table::read_csv(&path).unwrap())
        .unwrap()
        .0
}

#[test]
fn real_tables_are_split_60_10_30_and_only_the_training_split_is_corrupted() {
    use metaadd::experiment::real::{corrupted_splits, Corruption};
    use metaadd::prepare::TaskKind;
    use metaadd::Task;
    let diabetes = table_of("diabetes.csv", "target", TaskKind::Regression);
    let n = diabetes.n_samples();
    for corruption in [
        Corruption::OneSided { share: 0.2 },
        Corruption::TwoSided { share: 0.2 },
        Corruption::HeavyTails,
    ] {
        let s = corrupted_splits(&diabetes, Task::Regression, corruption, 4).unwrap();
        assert_eq!(s.test.n_samples(), (0.3 * n as f64).round() as usize);
        assert_eq!(
            s.train.n_samples() + s.meta.n_samples() + s.test.n_samples(),
            n
        );
        // The clean training split was standardised: the meta and test targets are on that
        // scale, and a clean copy of the training split differs from it only where corrupted.
        let clean = corrupted_splits(
            &diabetes,
            Task::Regression,
            Corruption::TwoSided { share: 0.0 },
            4,
        )
        .unwrap();
        assert_eq!(clean.meta.y(), s.meta.y());
        assert_eq!(clean.test.y(), s.test.y());
        let moved: Vec<f64> = s
            .train
            .y()
            .iter()
            .zip(clean.train.y())
            .map(|(a, b)| a - b)
            .collect();
        match corruption {
            Corruption::OneSided { .. } => {
                assert!(moved.iter().zip(&s.corrupted).all(|(d, &c)| if c {
                    (d - 5.0).abs() < 1e-9
                } else {
                    *d == 0.0
                }));
                assert_eq!(
                    s.corrupted.iter().filter(|&&c| c).count(),
                    (0.2 * s.train.n_samples() as f64).round() as usize
                );
            }
            Corruption::TwoSided { .. } => {
                assert!(moved.iter().any(|d| *d < -4.0) && moved.iter().any(|d| *d > 4.0));
            }
            _ => assert!(moved.iter().all(|d| *d != 0.0)),
        }
    }
    let fair = table_of("fair.csv", "had_affair", TaskKind::Binary);
    let s = corrupted_splits(
        &fair,
        Task::Binary,
        Corruption::Minority {
            share: 0.05,
            flip: 0.15,
        },
        1,
    )
    .unwrap();
    // Every split has the minority share; the meta and test labels are clean.
    for (which, d) in [("meta", &s.meta), ("test", &s.test)] {
        let share = d.y().iter().sum::<f64>() / d.n_samples() as f64;
        assert!((share - 0.05).abs() < 0.01, "{which}: {share}");
    }
    let flipped = s.corrupted.iter().filter(|&&c| c).count();
    assert_eq!(
        flipped,
        (0.15 * s.train.n_samples() as f64).round() as usize
    );
    // A meta-set-size sweep: 5% of the rows as the meta set, the test set still 30%.
    let small = metaadd::experiment::real::corrupted_splits_with_shares(
        &diabetes,
        Task::Regression,
        Corruption::OneSided { share: 0.2 },
        (0.05, 0.3),
        metaadd::prepare::MetaSelect::Random,
        4,
    )
    .unwrap();
    assert_eq!(small.meta.n_samples(), (0.05 * n as f64).round() as usize);
    assert_eq!(small.test.n_samples(), (0.3 * n as f64).round() as usize);
    let setting = Setting::Real {
        name: "diabetes".into(),
        data: diabetes.clone(),
        task: Task::Regression,
        corruption: Corruption::HeavyTails,
        meta_share: 0.05,
        meta_select: metaadd::prepare::MetaSelect::Random,
    };
    assert_eq!(setting.to_string(), "diabetes heavy tails meta 5%");
    // A class-balanced meta set: the same test rows, an equal count of each class in the meta
    // set (the minority capped at half of its rows left by the test set), the rest trains.
    let minority = Corruption::Minority {
        share: 0.05,
        flip: 0.0,
    };
    let shares = (0.1, 0.3);
    let draw = |select| {
        metaadd::experiment::real::corrupted_splits_with_shares(
            &fair,
            Task::Binary,
            minority,
            shares,
            select,
            2,
        )
        .unwrap()
    };
    let random = draw(metaadd::prepare::MetaSelect::Random);
    let balanced = draw(metaadd::prepare::MetaSelect::Balanced);
    assert_eq!(random.test.y(), balanced.test.y());
    let ones = |d: &metaadd::data::Dataset| d.y().iter().filter(|&&v| v == 1.0).count();
    let zeros = |d: &metaadd::data::Dataset| d.n_samples() - ones(d);
    let minority_left = ones(&random.train) + ones(&random.meta);
    assert_eq!(ones(&balanced.meta), minority_left / 2);
    assert!(zeros(&balanced.meta).abs_diff(random.meta.n_samples() / 2) <= 1);
    assert_eq!(
        balanced.train.n_samples() + balanced.meta.n_samples(),
        random.train.n_samples() + random.meta.n_samples()
    );
    let setting = Setting::Real {
        name: "fair".into(),
        data: fair.clone(),
        task: Task::Binary,
        corruption: minority,
        meta_share: 0.1,
        meta_select: metaadd::prepare::MetaSelect::Balanced,
    };
    assert_eq!(setting.to_string(), "fair minority 5% balanced meta");
    // Regression has no classes to balance.
    assert!(metaadd::experiment::real::corrupted_splits_with_shares(
        &diabetes,
        Task::Regression,
        Corruption::HeavyTails,
        shares,
        metaadd::prepare::MetaSelect::Balanced,
        0,
    )
    .unwrap_err()
    .to_string()
    .contains("meta_select"));
    // A corruption of the wrong kind is refused, naming both.
    let err = corrupted_splits(&fair, Task::Binary, Corruption::HeavyTails, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("heavy tails") && err.contains("binary"),
        "{err}"
    );
}

#[test]
fn real_protocol_records_balanced_accuracy_auc_features_and_the_chosen_weighting() {
    use metaadd::prepare::TaskKind;
    let anes = table_of("anes96.csv", "vote", TaskKind::Binary);
    let diabetes = table_of("diabetes.csv", "target", TaskKind::Regression);
    let mut experiment = Experiment::real(
        vec![("diabetes".into(), diabetes)],
        vec![("anes96".into(), anes)],
        Vec::new(),
    );
    assert_eq!(experiment.settings.len(), 7);
    experiment.settings = vec![
        experiment.settings[0].clone(),
        experiment.settings[4].clone(),
    ];
    assert_eq!(experiment.settings[1].to_string(), "anes96 flips 30%");
    experiment.methods = vec![Method::Uniform, Method::TiltedAuto, Method::ClassAware(2)];
    experiment.seeds = 2;
    experiment.lambda = LambdaChoice::Fixed(0.01);
    experiment.fit.iterations = 10;
    let records = experiment.run(None, |_, _, _| {}).unwrap();
    // The class-aware MAM is left out of the regression setting.
    assert_eq!(records.len(), 2 * 2 + 3 * 2);
    for r in &records {
        assert!(r.features.as_ref().is_some_and(|f| f.len() == r.selected));
        let classification = r.setting.starts_with("anes96");
        assert_eq!(r.balanced_accuracy.is_some(), classification, "{r:?}");
        assert_eq!(r.roc_auc.is_some(), classification, "{r:?}");
        if r.method == "tilted(auto)" {
            assert!(r
                .weighting
                .as_deref()
                .is_some_and(|w| w.starts_with("tilted(")));
        }
    }
    let table = metaadd::experiment::table(&records);
    for column in ["balanced acc.", "ROC-AUC", "stability", "chosen"] {
        assert!(table.contains(column), "{table}");
    }
}
