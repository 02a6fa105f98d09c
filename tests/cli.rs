//! The `metaadd` binary end to end: fit → predict → inspect → plot on small files, and every
//! kind of bad input giving a non-zero exit and one message naming the file, line and column.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_metaadd");

/// A scratch folder for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("metaadd-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Writes `text` to `file` and returns its path as a string.
    fn write(&self, file: &str, text: &str) -> String {
        let path = self.path(file);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    // Not sharded by a job array the tests may run in.
    Command::new(BIN)
        .args(args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap()
}

/// Runs a command that must succeed, showing its stderr if it does not.
fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `csv` with one more column `name` holding `value` on every row.
fn with_column(csv: &str, name: &str, value: &str) -> String {
    csv.lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l},{name}\n"),
            _ => format!("{l},{value}\n"),
        })
        .collect()
}

/// Runs a command that must fail and returns its one-line error message.
fn error_of(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{args:?} succeeded; stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "{args:?}: want one error line, got: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "`{message}` does not mention `{part}`"
        );
    }
}

/// `n` rows of `a, b, c, y` with `y` a smooth function of `a` and `b` (`c` is noise).
fn regression_csv(n: usize) -> String {
    let mut text = String::from("a,b,c,y\n");
    for i in 0..n {
        let a = (i as f64 * 0.37).sin() * 2.0;
        let b = (i as f64 * 0.11).cos();
        let c = ((i * 7919) % 101) as f64 / 50.0 - 1.0;
        text.push_str(&format!("{a},{b},{c},{}\n", a * a - b));
    }
    text
}

/// `n` rows with a binary label `y` (0/1) depending on `a`.
fn binary_csv(n: usize) -> String {
    let mut text = String::from("a,b,y\n");
    for i in 0..n {
        let a = (i as f64 * 0.37).sin() * 2.0;
        let b = (i as f64 * 0.11).cos();
        text.push_str(&format!("{a},{b},{}\n", u8::from(a + 0.3 * b > 0.0)));
    }
    text
}

/// Replaces the `--epochs` value of [`fit_args`].
fn set_epochs<'a>(args: &mut [&'a str], epochs: &'a str) {
    let at = args.iter().position(|a| *a == "--epochs").unwrap();
    args[at + 1] = epochs;
}

fn fit_args<'a>(train: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "fit",
        "--train",
        train,
        "--target",
        "y",
        "--meta-frac",
        "0.25",
        "--epochs",
        "20",
        "--quiet",
        "--out",
        out,
    ]
}

#[test]
fn fit_predict_inspect_and_plot_a_regression_model() {
    let s = Scratch::new("regression");
    let train = s.write("train.csv", &regression_csv(120));
    let model = s.path("model.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.push("--json");
    let out = run_ok(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["training_rows"], 90);
    assert_eq!(report["meta_rows"], 30);
    assert!(report["meta_mse"].as_f64().unwrap().is_finite());
    assert!(report["meta_r2"].as_f64().unwrap().is_finite());

    // Predict with the columns in another order and an extra column: matched by name.
    let mut shuffled = String::from("extra,c,y,b,a\n");
    for line in regression_csv(10).lines().skip(1) {
        let v: Vec<&str> = line.split(',').collect();
        shuffled.push_str(&format!("x,{},{},{},{}\n", v[2], v[3], v[1], v[0]));
    }
    let data = s.write("new.csv", &shuffled);
    let original = s.write("same.csv", &regression_csv(10));
    let predictions = s.path("p.csv").display().to_string();
    run_ok(&[
        "predict",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        &predictions,
    ]);
    let written = std::fs::read_to_string(&predictions).unwrap();
    let out = run(&["predict", "--model", &model, "--data", &original]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), written);
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "predicted_y");
    assert_eq!(lines.len(), 11);

    let out = run_ok(&["inspect", "--model", &model, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["target"], "y");
    assert_eq!(info["training_rows"], 90);
    assert_eq!(info["format_version"], 2);
    assert_eq!(info["k"], 5);
    assert_eq!(info["standardize_target"], true);
    let out = run(&["inspect", "--model", &model]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("group norm"));

    let plots = s.path("plots").display().to_string();
    for format in ["svg", "png"] {
        run_ok(&[
            "plot", "--model", &model, "--out", &plots, "--format", format,
        ]);
        let image = std::fs::read(s.path(&format!("plots/weight_curve.{format}"))).unwrap();
        match format {
            "png" => assert_eq!(&image[..4], b"\x89PNG"),
            _ => assert!(String::from_utf8_lossy(&image).contains("training loss")),
        }
    }
    let curve = std::fs::read_to_string(s.path("plots/weight_curve.csv")).unwrap();
    assert!(curve.starts_with("loss,weight\n"));
    assert_eq!(curve.lines().count(), 201);
    // The curve spans the model's own training losses (their 99th percentile), not 0–10.
    let last: f64 = curve
        .lines()
        .last()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last > 0.0 && last < 10.0, "{last}");
    let shapes = std::fs::read_to_string(s.path("plots/shape_functions.csv")).unwrap();
    assert!(shapes.starts_with("feature,output,x,f\n"));
}

#[test]
fn classification_predicts_probabilities_and_original_labels() {
    let s = Scratch::new("binary");
    // Labels -1/1: stored and given back as such.
    let text = binary_csv(120).replace(",0\n", ",-1\n");
    let train = s.write("train.csv", &text);
    let model = s.path("model.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.extend(["--task", "binary", "--meta-select", "hard"]);
    run_ok(&args);
    let out = run(&["predict", "--model", &model, "--data", &train]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("probability_-1,probability_1,predicted_y")
    );
    for line in lines {
        let v: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        assert!((v[0] + v[1] - 1.0).abs() < 1e-5, "{line}");
        assert!(v[2] == -1.0 || v[2] == 1.0, "{line}");
    }
    // Shape functions on the log-odds scale, said on the axis; with --data the weight curve
    // spans the rows' losses, their histogram beneath; hidden features are said.
    let plots = s.path("plots").display().to_string();
    let out = run_ok(&[
        "plot",
        "--model",
        &model,
        "--out",
        &plots,
        "--data",
        &train,
        "--max-features",
        "1",
    ]);
    let svg = std::fs::read_to_string(s.path("plots/shape_functions.svg")).unwrap();
    assert!(svg.contains("log-odds of 1"), "no log-odds label");
    let curve = std::fs::read_to_string(s.path("plots/weight_curve.svg")).unwrap();
    assert!(curve.contains("rows of --data"), "no histogram");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let info: serde_json::Value =
        serde_json::from_slice(&run_ok(&["inspect", "--model", &model, "--json"]).stdout).unwrap();
    let selected = info["selected_features"].as_u64().unwrap();
    let note = format!("1 of {selected} selected features drawn");
    assert_eq!(stderr.contains(&note), selected > 1, "{stderr}");
    // The weights table gives targets and predictions as the original labels.
    let out = run_ok(&["weights", "--model", &model, "--data", &train]);
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let v: Vec<&str> = line.split(',').collect();
        assert!(
            ["-1", "1"].contains(&v[2]) && ["-1", "1"].contains(&v[3]),
            "{line}"
        );
        assert!(v[5].parse::<f64>().unwrap() >= 0.0, "{line}");
    }
}

#[test]
fn held_out_scores_weights_table_and_kept_columns() {
    let s = Scratch::new("diagnostics");
    // Rows 0..120 train (a fifth of them with the target moved up by 20: outliers), 120..160
    // are held out.
    let all = regression_csv(160);
    let mut lines: Vec<String> = all.lines().map(String::from).collect();
    for (i, line) in lines.iter_mut().enumerate().skip(1).take(120) {
        if i % 5 == 0 {
            let (head, y) = line.rsplit_once(',').unwrap();
            *line = format!("{head},{}", y.parse::<f64>().unwrap() + 20.0);
        }
    }
    let train = s.write("train.csv", &(lines[..121].join("\n") + "\n"));
    let test_text = format!("{}\n{}\n", lines[0], lines[121..].join("\n"));
    let test = s.write("test.csv", &with_column(&test_text, "id", "r"));
    let model = s.path("model.safetensors").display().to_string();
    let weights = s.path("weights.csv").display().to_string();
    let mut args = fit_args(&train, &model);
    set_epochs(&mut args, "60");
    args.extend(["--test", &test, "--weights-out", &weights, "--json"]);
    let out = run_ok(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["test_rows"], 40);
    for key in ["test_mse", "test_mae", "test_r2"] {
        assert!(report[key].as_f64().unwrap().is_finite(), "{key}: {report}");
    }

    // `evaluate` gives the fit's test scores.
    let out = run_ok(&["evaluate", "--model", &model, "--data", &test, "--json"]);
    let scores: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(scores["rows"], 40);
    for key in ["mse", "mae", "r2"] {
        let (a, b) = (
            scores[key].as_f64().unwrap(),
            report[format!("test_{key}")].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            "{key}: {a} vs {b}"
        );
    }
    let text =
        String::from_utf8_lossy(&run_ok(&["evaluate", "--model", &model, "--data", &test]).stdout)
            .to_string();
    assert!(text.contains("mse") && text.contains("r2"), "{text}");

    // The training rows' weights table: one line per training row with its file line; the
    // moved rows are the down-weighted ones.
    let table = std::fs::read_to_string(&weights).unwrap();
    let mut rows = table.lines();
    assert_eq!(
        rows.next(),
        Some("row,line,target,prediction,loss,weight,rank,down_weighted")
    );
    let rows: Vec<Vec<String>> = rows
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 90);
    let mut ranks: Vec<usize> = rows.iter().map(|r| r[6].parse().unwrap()).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=90).collect::<Vec<_>>());
    let (mut flagged, mut moved_flagged) = (0, 0);
    for r in &rows {
        // File line l holds data row l − 2, moved when (l − 1) % 5 == 0.
        let line: usize = r[1].parse().unwrap();
        let moved = (line - 1).is_multiple_of(5);
        if r[7] == "true" {
            flagged += 1;
            moved_flagged += usize::from(moved);
        }
    }
    assert!(
        flagged > 0 && moved_flagged * 10 >= flagged * 8,
        "{flagged} flagged, {moved_flagged} moved"
    );
    assert_eq!(report["down_weighted_training_rows"], flagged);
    // `weights` on a file gives every row, in the file's order, lines 2, 3, …
    let out = run_ok(&[
        "weights",
        "--model",
        &model,
        "--data",
        &train,
        "--down-threshold",
        "0.1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 121);
    assert!(
        lines[1].starts_with("0,2,") && lines[120].starts_with("119,121,"),
        "{}",
        lines[1]
    );
    let e = error_of(&[
        "weights",
        "--model",
        &model,
        "--data",
        &train,
        "--down-threshold",
        "nan",
    ]);
    assert_mentions(&e, &["--down-threshold", "NaN"]);

    // `predict --keep` copies columns through, in the order given.
    let out = run_ok(&[
        "predict", "--model", &model, "--data", &test, "--keep", "id,y",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("id,y,predicted_y\nr,"), "{text}");
    assert_eq!(text.lines().count(), 41);
    let e = error_of(&[
        "predict", "--model", &model, "--data", &test, "--keep", "nope",
    ]);
    assert_mentions(&e, &["--keep", "nope"]);
    // A test file without the target is refused before the fit.
    let e = error_of(
        &[
            &args[..args.len() - 5],
            &["--test", &s.write("x.csv", "a,b,c\n1,2,3\n")],
        ]
        .concat(),
    );
    assert_mentions(&e, &["x.csv", "y"]);
}

/// Every command that computes takes `--device`; this build (without the `cuda` feature)
/// refuses `cuda` at once with the command that rebuilds it, and `--threads 0` is refused.
#[test]
fn device_and_threads_flags_on_every_computing_command() {
    let commands: [&[&str]; 9] = [
        &["fit", "--train", "t.csv", "--target", "y"],
        &["predict", "--model", "m", "--data", "d.csv"],
        &["evaluate", "--model", "m", "--data", "d.csv"],
        &["weights", "--model", "m", "--data", "d.csv"],
        &[
            "hypergrad",
            "--train",
            "t.csv",
            "--meta",
            "m.csv",
            "--target",
            "y",
        ],
        &[
            "check-grad",
            "--train",
            "t.csv",
            "--meta",
            "m.csv",
            "--target",
            "y",
        ],
        &["sweep-k"],
        &["experiment", "paper-regression"],
        &["demo"],
    ];
    for command in commands {
        if !cfg!(feature = "cuda") {
            let e = error_of(&[command, &["--device", "cuda:0"]].concat());
            assert_mentions(&e, &["--device", "cargo build --release --features cuda"]);
        }
        let e = error_of(&[command, &["--device", "tpu"]].concat());
        assert_mentions(&e, &["--device", "tpu", "cpu, cuda or cuda:N"]);
        let e = error_of(&[command, &["--threads", "0"]].concat());
        assert_mentions(&e, &["--threads", "at least 1"]);
    }
}

/// One name per concept, negative numbers as values, errors that name the flag, nothing a
/// command would ignore accepted, and a hint when a run diverges.
#[test]
fn flags_are_named_checked_and_never_ignored() {
    let s = Scratch::new("flags");
    let train = s.write("train.csv", &regression_csv(120));
    let meta = s.write("meta.csv", &regression_csv(40));
    let model = s.path("m.safetensors").display().to_string();
    let base = fit_args(&train, &model);
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    // A negative value is read as a value and refused for it, naming the flag.
    let out = run(&with(&base, &["--lambda", "-1"]));
    assert!(!out.status.success());
    assert_mentions(
        &String::from_utf8_lossy(&out.stderr),
        &["--lambda", "-1", "≥ 0"],
    );
    let e = error_of(&with(&base, &["--ridge", "-0.5"]));
    assert_mentions(&e, &["invalid --ridge", "-0.5"]);
    // Library settings are named by their flags.
    let e = error_of(&with(&base, &["--k", "0"]));
    assert_mentions(&e, &["invalid --k", "at least 1"]);
    let e = error_of(&with(&base, &["--lr", "0"]));
    assert_mentions(&e, &["invalid --lr"]);
    let mut frac = base.clone();
    let at = frac.iter().position(|a| *a == "0.25").unwrap();
    frac[at] = "1.5";
    assert_mentions(&error_of(&frac), &["invalid --meta-frac", "1.5"]);
    // No untrained model: zero iterations are refused (`--epochs` is an alias).
    for flag in ["--iterations", "--epochs"] {
        let mut args = base.clone();
        set_epochs(&mut args, "0");
        let at = args.iter().position(|a| *a == "--epochs").unwrap();
        args[at] = flag;
        let e = error_of(&args);
        assert_mentions(&e, &["invalid --iterations", "at least 1"]);
    }
    assert!(!Path::new(&model).exists());
    // A divergence says what to try.
    let e = error_of(&with(&base, &["--eta", "1e6", "--lr", "10"]));
    assert_mentions(&e, &["diverged", "--eta", "--lr"]);
    // Fixed weights at a fixed λ need no meta set; learned weights do.
    let fixed = [
        "fit",
        "--train",
        &train,
        "--target",
        "y",
        "--weighting",
        "huber(1)",
        "--quiet",
        "--out",
        &model,
    ];
    let out = run_ok(&fixed);
    assert!(String::from_utf8_lossy(&out.stdout).contains("none: fixed weights"));
    let e = error_of(
        &fixed
            .iter()
            .map(|a| if *a == "huber(1)" { "meta" } else { a })
            .collect::<Vec<_>>(),
    );
    assert_mentions(&e, &["--meta", "--meta-frac"]);
    // hypergrad and check-grad refuse what they would ignore.
    let problem = ["--train", &train, "--meta", &meta, "--target", "y"];
    for command in ["hypergrad", "check-grad"] {
        for (flag, value) in [("--dtype", "f32"), ("--lr", "0.1"), ("--iterations", "5")] {
            let e = error_of(&[&[command][..], &problem, &[flag, value]].concat());
            assert_mentions(&e, &[command, flag, "remove it"]);
        }
        for (flag, value) in [("--hidden", "20"), ("--features", "a")] {
            let with_model = ["--model", model.as_str(), flag, value];
            let e = error_of(&[&[command][..], &problem, &with_model].concat());
            assert_mentions(&e, &["--model", flag, "remove it"]);
        }
        // The model's target is the problem's: another --target is refused.
        let other = [
            &["--train", &train, "--meta", &meta, "--target", "b"][..],
            &["--model", &model],
        ]
        .concat();
        let e = error_of(&[&[command][..], &other].concat());
        assert_mentions(&e, &["--target b", "`y`"]);
    }
    // Path settings with a fixed λ are refused; so is a zero path length.
    let e = error_of(&with(&base, &["--lambdas", "5"]));
    assert_mentions(&e, &["--lambdas", "--lambda auto"]);
    let e = error_of(&with(
        &base,
        &["--lambda", "auto", "--path-iterations", "0"],
    ));
    assert_mentions(&e, &["--path-iterations", "at least 1"]);
    // Counts of features are --n-features in the commands that generate data.
    let out = run(&["demo", "--features", "5"]);
    assert!(!out.status.success());
    assert_mentions(&String::from_utf8_lossy(&out.stderr), &["--features"]);
}

/// The README's quick start, command by command as written (the build line aside), in a
/// scratch folder: every command succeeds and writes what the README says.
#[test]
fn readme_quick_start_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("## Quick start")
        .nth(1)
        .expect("README has a Quick start section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the quick start has a sh block");
    let s = Scratch::new("quickstart");
    let data = root.join("examples/data");
    let mut ran = 0;
    for line in block.lines().map(str::trim) {
        if line.starts_with("mkdir ") {
            std::fs::create_dir_all(s.path("runs")).unwrap();
            continue;
        }
        let Some(args) = line.strip_prefix("metaadd ") else {
            assert!(
                line.is_empty() || line.starts_with('#') || line.starts_with("cargo build"),
                "a quick-start line this test does not run: {line}"
            );
            continue;
        };
        let args: Vec<String> = args
            .split_whitespace()
            .map(|a| match a.strip_prefix("examples/data/") {
                Some(file) => data.join(file).display().to_string(),
                None => a.to_string(),
            })
            .collect();
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(&s.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert_eq!(ran, 5);
    for file in [
        "runs/train.csv",
        "runs/test.csv",
        "runs/model.safetensors",
        "runs/weights.csv",
        "runs/plots/weight_curve.svg",
        "runs/plots/shape_functions.svg",
    ] {
        assert!(s.path(file).is_file(), "{file} missing");
    }
}

#[test]
fn split_holds_out_rows_as_they_were_stratified_when_asked() {
    let s = Scratch::new("split");
    let data = s.write("d.csv", &binary_csv(100).replace(",1\n", ",yes\n"));
    let (held, rest) = (s.path("h.csv"), s.path("r.csv"));
    let (h, r) = (held.display().to_string(), rest.display().to_string());
    let args = [
        "split",
        "--data",
        &data,
        "--frac",
        "0.25",
        "--held-out",
        &h,
        "--rest",
        &r,
        "--stratify",
        "y",
    ];
    run_ok(&args);
    let original: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let (held_text, rest_text) = (
        std::fs::read_to_string(&held).unwrap(),
        std::fs::read_to_string(&rest).unwrap(),
    );
    let (held_lines, rest_lines): (Vec<&str>, Vec<&str>) =
        (held_text.lines().collect(), rest_text.lines().collect());
    assert_eq!(
        (held_lines[0], rest_lines[0]),
        (original[0].as_str(), original[0].as_str())
    );
    assert_eq!((held_lines.len() - 1, rest_lines.len() - 1), (25, 75));
    // Every row once, as it was; each label held out in proportion.
    let mut all: Vec<&str> = held_lines[1..]
        .iter()
        .chain(&rest_lines[1..])
        .copied()
        .collect();
    all.sort_unstable();
    let mut want: Vec<&str> = original[1..].iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(all, want);
    let yes = |lines: &[&str]| lines.iter().filter(|l| l.ends_with(",yes")).count();
    let share = yes(&held_lines[1..]) as f64 / 25.0;
    let overall = yes(&want) as f64 / 100.0;
    assert!((share - overall).abs() <= 0.04, "{share} vs {overall}");
    // The same seed gives the same split.
    run_ok(&args);
    assert_eq!(std::fs::read_to_string(&held).unwrap(), held_text);
    let e = error_of(&[&args[..8], &[h.as_str()]].concat());
    assert_mentions(&e, &["--held-out", "--rest", "two files"]);
    // The input is never an output, however the path is spelled; the fraction is checked.
    let dotted = format!("{}/./d.csv", s.0.display());
    let e = error_of(&[&args[..8], &[dotted.as_str()]].concat());
    assert_mentions(&e, &["--rest", "--data"]);
    let mut frac = args.to_vec();
    frac[4] = "1.5";
    assert_mentions(&error_of(&frac), &["--frac", "1.5"]);
    let e = error_of(&[&args[..9], &["--stratify", "label"]].concat());
    assert_mentions(&e, &["--stratify label", "a, b, y"]);
}

#[test]
fn missing_file() {
    let s = Scratch::new("missing");
    let path = s.path("nope.csv").display().to_string();
    let msg = error_of(&fit_args(&path, "m.safetensors"));
    assert_mentions(&msg, &[&path, "No such file"]);
}

#[test]
fn missing_target_column() {
    let s = Scratch::new("target");
    let train = s.write("t.csv", &regression_csv(40));
    let mut args = fit_args(&train, "m.safetensors");
    args[4] = "label";
    let msg = error_of(&args);
    assert_mentions(&msg, &[&train, "no column `label`", "`a`, `b`, `c`, `y`"]);
}

#[test]
fn non_numeric_empty_nan_and_infinite_cells() {
    let s = Scratch::new("cells");
    for (bad, what) in [
        ("abc", "`abc` is not a number"),
        ("", "value is missing"),
        ("NaN", "value is missing"),
        ("NA", "value is missing"),
        ("inf", "inf is not finite"),
    ] {
        // Row 5 (file line 6), column `b`.
        let mut lines: Vec<String> = regression_csv(40).lines().map(String::from).collect();
        let mut cells: Vec<String> = lines[5].split(',').map(String::from).collect();
        cells[1] = bad.to_string();
        lines[5] = cells.join(",");
        let train = s.write("t.csv", &(lines.join("\n") + "\n"));
        let msg = error_of(&fit_args(&train, "m.safetensors"));
        assert_mentions(&msg, &[&train, "line 6", "column `b`", what]);
        if what == "value is missing" {
            // Dropped on request, with a warning naming the line.
            let out = s.path("dropped.safetensors").display().to_string();
            let mut args = fit_args(&train, &out);
            args.extend(["--missing", "drop-rows"]);
            let out = run_ok(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("dropped 1 row(s) with missing values (line 6)"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn constant_feature_is_dropped_with_a_warning_or_refused_when_alone() {
    let s = Scratch::new("constant");
    let text = with_column(&regression_csv(60), "k", "3");
    let train = s.write("t.csv", &text);
    let model = s.path("m.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.push("--json");
    let out = run_ok(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("column `k` is constant"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["features"], 3);

    let only = s.write(
        "only.csv",
        "k,y\n2,1\n2,3\n2,5\n2,4\n2,0\n2,9\n2,1\n2,2\n2,3\n2,7\n",
    );
    let msg = error_of(&fit_args(&only, &model));
    assert_mentions(&msg, &[&only, "constant", "`k`"]);
}

#[test]
fn fewer_rows_than_the_basis_needs() {
    let s = Scratch::new("few");
    let train = s.write("t.csv", &regression_csv(8));
    let msg = error_of(&fit_args(&train, "m.safetensors"));
    assert_mentions(&msg, &[&train, "6 training rows", "needs at least 7"]);
}

#[test]
fn class_labels_of_any_values_text_or_numbers() {
    let s = Scratch::new("labels");
    // Binary: a third distinct value is refused, naming the labels found.
    let text = binary_csv(60).replacen(",1\n", ",2\n", 1);
    let train = s.write("binary.csv", &text);
    let mut args = fit_args(&train, "m.safetensors");
    args.extend(["--task", "binary"]);
    let msg = error_of(&args);
    assert_mentions(
        &msg,
        &[&train, "column `y`", "0, 1, 2", "--task multiclass"],
    );

    // Text labels M/B: fitted, predicted and scored as such.
    let text = binary_csv(120)
        .replace(",0\n", ",B\n")
        .replace(",1\n", ",M\n");
    let train = s.write("text.csv", &text);
    let model = s.path("text.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.extend(["--task", "binary"]);
    run_ok(&args);
    let out = run_ok(&["predict", "--model", &model, "--data", &train]);
    let predictions = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = predictions.lines();
    assert_eq!(
        lines.next(),
        Some("probability_B,probability_M,predicted_y")
    );
    assert!(lines.all(|l| l.ends_with(",B") || l.ends_with(",M")));

    // Multi-class labels 1, 2, 3.
    let text: String = binary_csv(90)
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l}\n"),
            _ => l
                .rsplit_once(',')
                .map(|(x, _)| format!("{x},{}\n", 1 + i % 3))
                .unwrap(),
        })
        .collect();
    let train = s.write("multi.csv", &text);
    let model = s.path("multi.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.extend(["--task", "multiclass"]);
    run_ok(&args);
    let out = run_ok(&["predict", "--model", &model, "--data", &train]);
    let predictions = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        predictions.starts_with("probability_1,probability_2,probability_3,predicted_y\n"),
        "{predictions}"
    );
}

/// A text feature column is one-hot encoded with its levels in the model file; a level the
/// model has not seen is an error at predict time naming the row and the level.
#[test]
fn categorical_feature_column() {
    let s = Scratch::new("categorical");
    let mut text = String::from("a,city,y\n");
    for i in 0..120 {
        let a = (i as f64 * 0.37).sin();
        let city = ["Oslo", "Rome", "Lima"][i % 3];
        text.push_str(&format!("{a},{city},{}\n", a + (i % 3) as f64));
    }
    let train = s.write("train.csv", &text);
    let model = s.path("m.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.push("--json");
    let out = run_ok(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["features"], 4);
    let info = run_ok(&["inspect", "--model", &model, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        info["levels_of_city"],
        serde_json::json!(["Lima", "Oslo", "Rome"])
    );
    let new = s.write("new.csv", "a,city\n0.1,Rome\n0.2,Paris\n");
    let msg = error_of(&["predict", "--model", &model, "--data", &new]);
    assert_mentions(
        &msg,
        &[&new, "line 3", "column `city`", "`Paris` is not a level"],
    );
    // Dropped on request, with a warning.
    let mut args = fit_args(&train, &model);
    args.extend(["--categorical-features", "drop"]);
    let out = run_ok(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("column `city` is text; dropped"),
        "{stderr}"
    );
}

/// `metaadd fit` and `FitParams::fit` on the same rows, settings and seed write the same bytes.
#[test]
fn library_fit_writes_the_cli_fit_bytes() {
    let s = Scratch::new("same-bytes");
    let train = s.write("train.csv", &regression_csv(120));
    let meta = s.write("meta.csv", &regression_csv(40));
    let cli_model = s.path("cli.safetensors").display().to_string();
    run_ok(&[
        "fit", "--train", &train, "--meta", &meta, "--target", "y", "--epochs", "15", "--k", "3",
        "--seed", "4", "--quiet", "--out", &cli_model,
    ]);
    let read = |path: &str| {
        metaadd::data::csv::CsvTable::read(std::path::Path::new(path))
            .unwrap()
            .dataset("y", None)
            .unwrap()
            .0
    };
    let fit = metaadd::FitParams::new(metaadd::Task::Regression)
        .iterations(15)
        .k(3)
        .seed(4)
        .fit(&read(&train), &read(&meta))
        .unwrap();
    let library_model = s.path("library.safetensors");
    fit.model.save(&library_model).unwrap();
    assert!(
        std::fs::read(&cli_model).unwrap() == std::fs::read(&library_model).unwrap(),
        "the library's model file differs from the CLI's"
    );
}

#[test]
fn meta_file_with_other_columns() {
    let s = Scratch::new("meta");
    let train = s.write("t.csv", &regression_csv(60));
    let meta = s.write(
        "m.csv",
        &regression_csv(20).replacen("a,b,c,y", "a,bb,c,y", 1),
    );
    let msg = error_of(&[
        "fit", "--train", &train, "--target", "y", "--meta", &meta, "--quiet",
    ]);
    assert_mentions(&msg, &[&meta, "no column `b`"]);
    // Columns the fit does not use may differ.
    let extra = s.write("e.csv", &with_column(&regression_csv(20), "z", "1"));
    let out = s.path("e.safetensors").display().to_string();
    run_ok(&[
        "fit", "--train", &train, "--target", "y", "--meta", &extra, "--quiet", "--epochs", "5",
        "--out", &out,
    ]);
}

/// A feature that happens to be constant in the meta file is still the training file's feature.
#[test]
fn meta_file_with_a_constant_feature_is_used_as_it_is() {
    let s = Scratch::new("meta-constant");
    let train = s.write("t.csv", &regression_csv(60));
    let meta: String = regression_csv(20)
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l}\n"),
            _ => {
                let mut v: Vec<&str> = l.split(',').collect();
                v[2] = "0.5";
                v.join(",") + "\n"
            }
        })
        .collect();
    let meta = s.write("m.csv", &meta);
    let out = run_ok(&[
        "fit",
        "--train",
        &train,
        "--target",
        "y",
        "--meta",
        &meta,
        "--epochs",
        "5",
        "--quiet",
        "--json",
        "--out",
        &s.path("m.safetensors").display().to_string(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["features"], 3);
    assert_eq!(report["meta_rows"], 20);
}

#[test]
fn predict_data_missing_a_model_feature() {
    let s = Scratch::new("predict");
    let train = s.write("t.csv", &regression_csv(80));
    let model = s.path("m.safetensors").display().to_string();
    run_ok(&fit_args(&train, &model));
    let data = s.write("new.csv", "a,c\n1,2\n");
    let msg = error_of(&["predict", "--model", &model, "--data", &data]);
    assert_mentions(&msg, &[&data, "no column `b`"]);
}

#[test]
fn files_that_are_not_metaadd_models() {
    let s = Scratch::new("models");
    let csv = s.write("t.csv", &regression_csv(10));
    let msg = error_of(&["inspect", "--model", &csv]);
    assert_mentions(&msg, &[&csv, "not a safetensors file"]);

    // A valid safetensors file written by another program.
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    let bytes = safetensors::serialize([("weight", view)], None).unwrap();
    let other = s.path("other.safetensors");
    std::fs::write(&other, bytes).unwrap();
    let other = other.display().to_string();
    for command in ["inspect", "plot"] {
        let mut args = vec![command, "--model", &other];
        if command == "plot" {
            args.extend(["--out", "unused"]);
        }
        let msg = error_of(&args);
        assert_mentions(&msg, &[&other, "not a metaadd model"]);
    }
    assert!(!Path::new("unused").exists());
}

/// `metaadd hypergrad` writes a problem whose hypergradient an independent plain-Rust
/// implementation of F_K (no candle, no autodiff) reproduces by central differences.
#[test]
fn hypergrad_file_is_checked_by_an_independent_implementation() {
    hypergrad_file_checked("dense");
}

/// The same with the unrolled steps' products reading the sparse B-spline design.
#[test]
fn hypergrad_file_on_the_sparse_design_is_checked_by_an_independent_implementation() {
    hypergrad_file_checked("sparse");
}

/// The same with each unrolled step fused into one pass over the sparse design's rows.
#[test]
fn hypergrad_file_with_fused_steps_is_checked_by_an_independent_implementation() {
    hypergrad_file_checked("fused");
}

fn hypergrad_file_checked(design: &str) {
    let s = Scratch::new(&format!("hypergrad-{design}"));
    let train = s.write("t.csv", &regression_csv(60));
    let meta = s.write(
        "m.csv",
        &regression_csv(100)[..]
            .lines()
            .skip(60)
            .fold(String::from("a,b,c,y\n"), |acc, l| acc + l + "\n"),
    );
    let out = s.path("p.safetensors").display().to_string();
    let args = [
        "hypergrad",
        "--train",
        &train,
        "--meta",
        &meta,
        "--target",
        "y",
        "--k",
        "4",
        "--lambda",
        "0.05",
        "--hidden",
        "8",
        "--n-basis",
        "4",
        "--design",
        design,
        "--out",
        &out,
    ];
    run_ok(&args);

    let bytes = std::fs::read(&out).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta_of = |k: &str| header.metadata().as_ref().unwrap()[k].clone();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let get = |name: &str| -> (Vec<f64>, Vec<usize>) {
        let t = file.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F64, "{name}");
        let v = t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (v, t.shape().to_vec())
    };
    let (k, p, m): (usize, usize, usize) = (
        meta_of("k").parse().unwrap(),
        meta_of("features").parse().unwrap(),
        meta_of("basis_size").parse().unwrap(),
    );
    assert_eq!((k, p, m, meta_of("loss").as_str()), (4, 3, 4, "squared"));
    let eta: f64 = meta_of("eta").parse().unwrap();
    let lambda: f64 = meta_of("lambda").parse().unwrap();
    let (xt, st) = get("design.train");
    let (yt, _) = get("target.train");
    let (xm, sm) = get("design.meta");
    let (ym, _) = get("target.meta");
    let (beta0, _) = get("beta");
    let (bias0, _) = get("bias");
    assert_eq!((st[1], sm[1]), (p * m, p * m));
    let names = ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"];
    let phi: Vec<Vec<f64>> = names
        .iter()
        .map(|n| get(&format!("weightnet.{n}")).0)
        .collect();
    let grads: Vec<Vec<f64>> = names
        .iter()
        .map(|n| get(&format!("hypergrad.weightnet.{n}")).0)
        .collect();

    // F_K written out by hand: squared loss, weight net 1 → h → 1 (ReLU, sigmoid).
    let f_k = |phi: &[Vec<f64>]| -> f64 {
        let (b1, w1, b2, w2) = (&phi[0], &phi[1], phi[2][0], &phi[3]);
        let weight = |l: f64| {
            let z: f64 = (0..b1.len())
                .map(|h| w2[h] * (w1[h] * l + b1[h]).max(0.0))
                .sum::<f64>()
                + b2;
            1.0 / (1.0 + (-z).exp())
        };
        let predict = |x: &[f64], beta: &[f64], bias: f64, i: usize| {
            (0..p * m).map(|c| x[i * p * m + c] * beta[c]).sum::<f64>() + bias
        };
        let (mut beta, mut bias) = (beta0.clone(), bias0[0]);
        let n = yt.len();
        for _ in 0..k {
            let mut grad = vec![0.0; p * m];
            let mut grad_bias = 0.0;
            for i in 0..n {
                let r = predict(&xt, &beta, bias, i) - yt[i];
                let g = weight(0.5 * r * r) * r / n as f64;
                for c in 0..p * m {
                    grad[c] += xt[i * p * m + c] * g;
                }
                grad_bias += g;
            }
            for j in 0..p {
                let u: Vec<f64> = (0..m)
                    .map(|c| beta[j * m + c] - eta * grad[j * m + c])
                    .collect();
                let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
                let shrink = if norm > 0.0 {
                    (1.0 - eta * lambda / norm).max(0.0)
                } else {
                    0.0
                };
                for c in 0..m {
                    beta[j * m + c] = u[c] * shrink;
                }
            }
            bias -= eta * grad_bias;
        }
        let nm = ym.len();
        (0..nm)
            .map(|i| 0.5 * (predict(&xm, &beta, bias, i) - ym[i]).powi(2))
            .sum::<f64>()
            / nm as f64
    };
    let stored: f64 = meta_of("meta_loss").parse().unwrap();
    assert!(
        (f_k(&phi) - stored).abs() <= 1e-12 * stored.abs().max(1.0),
        "{} vs {stored}",
        f_k(&phi)
    );
    let (mut diff, mut norm) = (0.0, 0.0);
    for t in 0..4 {
        for e in 0..phi[t].len() {
            let h = 1e-6;
            let mut plus = phi.clone();
            plus[t][e] += h;
            let mut minus = phi.clone();
            minus[t][e] -= h;
            let fd = (f_k(&plus) - f_k(&minus)) / (2.0 * h);
            diff += (fd - grads[t][e]).powi(2);
            norm += fd * fd;
        }
    }
    let err = (diff / norm).sqrt();
    assert!(err <= 1e-6, "relative error {err:e}");
}

#[test]
fn check_grad_prints_every_tensor_and_fails_above_the_tolerance() {
    let s = Scratch::new("check-grad");
    let data = regression_csv(100);
    let train = s.write(
        "t.csv",
        &data.lines().take(61).collect::<Vec<_>>().join("\n"),
    );
    let meta = s.write(
        "m.csv",
        &data
            .lines()
            .skip(61)
            .fold(String::from("a,b,c,y\n"), |acc, l| acc + l + "\n"),
    );
    let base = [
        "check-grad",
        "--train",
        &train,
        "--meta",
        &meta,
        "--target",
        "y",
        "--lambda",
        "0.05",
        "--hidden",
        "6",
        "--n-basis",
        "4",
        "--ridge",
        "0.5",
    ];
    for mode in [
        "exact",
        "exact-recompute",
        "truncated(2)",
        "one-step",
        "implicit",
    ] {
        let args: Vec<&str> = base
            .iter()
            .copied()
            .chain(["--k", "3", "--mode", mode])
            .collect();
        let out = String::from_utf8(run_ok(&args).stdout).unwrap();
        for name in metaadd::weightnet::PARAMETER_NAMES {
            assert!(out.contains(name), "{mode}: {out}");
        }
        let overall: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("overall relative error "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(overall <= 1e-6, "{mode}: {out}");
        assert_eq!(
            out.contains("conjugate gradients"),
            mode == "implicit",
            "{out}"
        );
    }
    // A tolerance no finite difference meets: exit status 1 with the measured error.
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--tolerance", "1e-300"])
        .collect();
    assert_mentions(&error_of(&args), &["relative error", "exceeds --tolerance"]);
    let args: Vec<&str> = base.iter().copied().chain(["--mode", "exactly"]).collect();
    let out = run(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mode `exactly`"));
}

#[test]
fn sweep_k_writes_a_table_csv_and_figures() {
    let s = Scratch::new("sweep-k");
    let prefix = s.path("sweep").display().to_string();
    let out = run_ok(&[
        "sweep-k",
        "--k",
        "1,4,16",
        "--modes",
        "exact,exact-recompute,truncated(2),implicit",
        "--n",
        "120",
        "--n-features",
        "8",
        "--iterations",
        "6",
        "--hidden",
        "8",
        "--snapshots",
        "2",
        "--quiet",
        "--out",
        &prefix,
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("rel. err."), "{stdout}");
    let csv = std::fs::read_to_string(format!("{prefix}.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // exact and exact-recompute at three depths, truncated(2) where 2 ≤ K, implicit once.
    assert_eq!(rows.len(), 3 + 3 + 2 + 1, "{csv}");
    let error = |mode: &str, k: &str| -> f64 {
        rows.iter()
            .find(|r| r[0] == mode && r[1] == k)
            .unwrap_or_else(|| panic!("no row {mode} K={k}: {csv}"))[2]
            .parse()
            .unwrap()
    };
    // Deeper unrolls come closer to the implicit hypergradient; recompute is the same value.
    assert!(
        error("exact", "16") < error("exact", "4") && error("exact", "4") < error("exact", "1")
    );
    for k in ["1", "4", "16"] {
        assert!((error("exact", k) - error("exact-recompute", k)).abs() <= 1e-9);
    }
    assert_eq!(error("implicit", ""), 0.0);
    // Peak memory is measured (the binary counts its allocations) and grows with K for exact.
    let peak = |mode: &str, k: &str| -> f64 {
        rows.iter().find(|r| r[0] == mode && r[1] == k).unwrap()[7]
            .parse()
            .unwrap()
    };
    assert!(peak("exact", "16") > peak("exact", "1"), "{csv}");
    for ext in ["svg", "png"] {
        let bytes = std::fs::read(format!("{prefix}.{ext}")).unwrap();
        assert!(bytes.len() > 1000, "{ext} figure is empty");
    }
    // exact and exact-recompute coincide: the second curve is told apart by its triangles
    // (and dashes), and the log K axis carries its decades' ticks (1, 2, 5, 10).
    let svg = std::fs::read_to_string(format!("{prefix}.svg")).unwrap();
    assert!(svg.contains("<polygon"), "no triangle markers");
    let text: String = svg.split_whitespace().collect();
    for tick in [">1</text>", ">2</text>", ">5</text>", ">10</text>"] {
        assert!(text.contains(tick), "no tick {tick}");
    }
    // A truncation deeper than every K leaves nothing to run.
    let message = error_of(&[
        "sweep-k",
        "--k",
        "1",
        "--modes",
        "truncated(3)",
        "--out",
        &prefix,
    ]);
    assert_mentions(&message, &["truncated(t) needs some K ≥ t"]);
}

#[test]
fn sweep_k_on_csv_files() {
    let s = Scratch::new("sweep-k-csv");
    let data = binary_csv(240);
    let lines: Vec<&str> = data.lines().collect();
    let part = |range: std::ops::Range<usize>| {
        std::iter::once(lines[0])
            .chain(lines[range].iter().copied())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let train = s.write("train.csv", &part(1..121));
    let meta = s.write("meta.csv", &part(121..181));
    let test = s.write("test.csv", &part(181..241));
    let prefix = s.path("sweep").display().to_string();
    let base = [
        "sweep-k",
        "--train",
        &train,
        "--meta",
        &meta,
        "--test",
        &test,
        "--target",
        "y",
        "--task",
        "binary",
        "--k",
        "1,3",
        "--modes",
        "exact,implicit",
        "--iterations",
        "4",
        "--hidden",
        "8",
        "--snapshots",
        "1",
        "--ridge",
        "0.1",
        "--quiet",
        "--out",
        &prefix,
    ];
    let out = String::from_utf8(run_ok(&base).stdout).unwrap();
    assert!(
        out.contains("test err.") && out.contains("(binary)"),
        "{out}"
    );
    let csv = std::fs::read_to_string(format!("{prefix}.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3, "{csv}");
    for row in csv.lines().skip(1) {
        let error: f64 = row.split(',').nth(5).unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&error), "error rate {error} in {row}");
    }
    // A meta file without the training file's columns is named.
    let bad = s.write("bad.csv", &part(121..181).replace("a,b,y", "a,c,y"));
    let args: Vec<&str> = base
        .iter()
        .map(|&a| if a == meta { bad.as_str() } else { a })
        .collect();
    assert_mentions(&error_of(&args), &["bad.csv"]);
}

#[test]
fn fit_with_lambda_auto_chooses_by_the_path_and_draws_it() {
    let dir = Scratch::new("lambda-auto");
    let train = dir.write("train.csv", &regression_csv(240));
    let model = dir.path("m.safetensors").display().to_string();
    let plot = dir.path("path.svg").display().to_string();
    let mut args = fit_args(&train, &model);
    args.extend([
        "--lambda",
        "auto",
        "--lambdas",
        "6",
        "--path-iterations",
        "20",
        "--path-plot",
        &plot,
        "--json",
    ]);
    let out = run_ok(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chosen = report["chosen_lambda"].as_f64().unwrap();
    let lambda_max = report["lambda_max"].as_f64().unwrap();
    assert!(chosen > 0.0 && chosen < lambda_max, "{report}");
    // The final model is fitted at a tenth of the chosen λ.
    assert!((report["refit_lambda"].as_f64().unwrap() - 0.1 * chosen).abs() < 1e-9 * chosen);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("group norms") && svg.contains("meta loss"));
    let csv = std::fs::read_to_string(dir.path("path.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "lambda,meta_loss,refit_meta_loss,active_groups,norm_a,norm_b,norm_c"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 6);
    // λ_max first, with every group at zero; λ falls along the path.
    assert_eq!(rows[0][0], lambda_max);
    assert_eq!(rows[0][3], 0.0);
    assert!(rows.windows(2).all(|w| w[1][0] < w[0][0]));
    // y = a² − b: both signal features are in the model.
    let selected: Vec<&str> = report["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["feature"].as_str().unwrap())
        .collect();
    assert!(
        selected.contains(&"a") && selected.contains(&"b"),
        "{report}"
    );
    // The path figure marks the chosen λ.
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("chosen λ"), "no mark at the chosen λ");
    // The same list, in the same shape, from `inspect`.
    let out = run_ok(&["inspect", "--model", &model, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["selected"], report["selected"]);
    run_ok(&["inspect", "--model", &model]);

    let base = [
        "fit",
        "--train",
        &train,
        "--target",
        "y",
        "--meta-frac",
        "0.25",
    ];
    // A value clap refuses (its exit status is 2).
    let out = run(&[&base[..], &["--lambda", "many"]].concat());
    assert!(!out.status.success());
    assert_mentions(
        &String::from_utf8_lossy(&out.stderr),
        &["--lambda", "auto", "many"],
    );
    let pdf = dir.path("path.pdf").display().to_string();
    let e = error_of(&[&base[..], &["--lambda", "auto", "--path-plot", &pdf]].concat());
    assert_mentions(&e, &["path.pdf", ".svg or .png"]);
}

#[test]
fn experiment_prints_a_table_and_resumes() {
    let dir = Scratch::new("experiment");
    let results = dir.path("results.csv").display().to_string();
    let table = dir.path("table.md").display().to_string();
    let args = [
        "experiment",
        "paper-regression",
        "--settings",
        "noise B,SpAM design",
        "--methods",
        "uniform,mam(2)",
        "--seeds",
        "2",
        "--n",
        "80",
        "--n-features",
        "9",
        "--lambda",
        "0.01",
        "--iterations",
        "5",
        "--quiet",
        "--results",
        &results,
        "--table",
        &table,
    ];
    let out = run_ok(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.starts_with("| setting | method | seeds | test MSE |"),
        "{stdout}"
    );
    for row in ["| noise B | uniform | 2 |", "| SpAM design | mam(2) | 2 |"] {
        assert!(stdout.contains(row), "{stdout}");
    }
    assert_eq!(
        std::fs::read_to_string(&table).unwrap().trim(),
        stdout.trim()
    );
    // A plain CSV (header and one line per fit), the description in a JSON file beside it.
    let written = std::fs::read_to_string(&results).unwrap();
    assert_eq!(written.lines().count(), 1 + 8);
    assert!(written.starts_with("setting,method,seed,"), "{written}");
    let about: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&results).with_extension("json")).unwrap(),
    )
    .unwrap();
    assert!(about["metaadd_experiment"]
        .as_str()
        .unwrap()
        .contains("methods [uniform, mam(2)]"));
    // A rerun fits nothing and prints the same table.
    let again = run_ok(&args);
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);
    assert_eq!(std::fs::read_to_string(&results).unwrap(), written);

    let e = error_of(&["experiment", "paper-regression", "--settings", "noise D"]);
    assert_mentions(&e, &["--settings", "noise D", "noise A"]);
    let e = error_of(&["experiment", "paper-regression", "--methods", "mam(x)"]);
    assert_mentions(&e, &["mam(x)", "K"]);
    let e = error_of(&["experiment", "digits"]);
    assert_mentions(&e, &["--data"]);
    let e = error_of(&[
        "experiment",
        "paper-regression",
        "--meta-select",
        "balanced",
    ]);
    assert_mentions(&e, &["--meta-select", "real experiment"]);
    let e = error_of(&["experiment", "real", "--meta-select", "hard"]);
    assert_mentions(&e, &["--meta-select", "random or balanced"]);
    let e = error_of(&[
        "hypergrad",
        "--train",
        "x.csv",
        "--target",
        "y",
        "--meta",
        "m.csv",
        "--lambda",
        "auto",
        "--out",
        "h.safetensors",
    ]);
    assert_mentions(&e, &["--lambda auto", "metaadd fit"]);
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let dir = Scratch::new("resume");
    let train = dir.write("train.csv", &regression_csv(160));
    let path = |name: &str| dir.path(name).display().to_string();
    let (straight, part, resumed) = (
        path("a.safetensors"),
        path("b.safetensors"),
        path("c.safetensors"),
    );
    let fit = |out: &str, epochs: &str, extra: &[&str]| {
        let mut args = fit_args(&train, out);
        set_epochs(&mut args, epochs);
        args.extend(["--k", "2", "--seed", "3"]);
        args.extend(extra);
        run_ok(&args);
    };
    fit(&straight, "30", &[]);
    // Stopped after 20 iterations (checkpoints every 10), then resumed to 30.
    fit(&part, "20", &["--checkpoint-every", "10"]);
    fit(&resumed, "30", &["--resume", &part]);
    assert_eq!(
        std::fs::read(&straight).unwrap(),
        std::fs::read(&resumed).unwrap()
    );

    // Other settings than the checkpoint's are refused, naming them.
    let mut args = fit_args(&train, &resumed);
    args.extend(["--k", "3", "--seed", "3", "--resume", &part]);
    let e = error_of(&args);
    assert_mentions(&e, &["--resume", "b.safetensors", "k: 2 → 3"]);
}

#[test]
fn divergence_names_the_iteration_and_leaves_the_last_checkpoint() {
    let dir = Scratch::new("diverge");
    let train = dir.write("train.csv", &regression_csv(160));
    let out = dir.path("m.safetensors").display().to_string();
    let mut args = fit_args(&train, &out);
    args.extend(["--eta", "30", "--checkpoint-every", "1"]);
    let e = error_of(&args);
    println!("{e}");
    assert_mentions(
        &e,
        &["iteration", "not finite", "the last good model (after"],
    );
    let after: usize = e
        .split("(after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let inspect = run_ok(&["inspect", "--model", &out, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    println!("{report}");
    assert!(after >= 1);
    assert!(
        report
            .to_string()
            .contains(&format!("\"iterations\":{after}")),
        "{report}"
    );
}

#[test]
fn a_fit_above_the_memory_limit_is_refused_before_it_starts() {
    let dir = Scratch::new("max-memory");
    let train = dir.write("train.csv", &regression_csv(400));
    let out = dir.path("m.safetensors").display().to_string();
    let mut args = fit_args(&train, &out);
    args.extend(["--k", "50", "--max-memory", "200K"]);
    let e = error_of(&args);
    assert_mentions(
        &e,
        &[
            "needs about",
            "K = 50",
            "200 KiB",
            "--max-memory",
            "exact-recompute",
            "--train-batch",
        ],
    );
    assert!(!dir.path("m.safetensors").exists());
    // The same fit with one step in memory at a time fits in the limit.
    args.extend(["--hypergradient", "exact-recompute"]);
    run_ok(&args);
    // With one unrolled step the final solve's f64 copy is the peak, and the message says so.
    let mut args = fit_args(&train, &out);
    args.extend(["--k", "1", "--max-memory", "100K"]);
    let e = error_of(&args);
    assert_mentions(
        &e,
        &["needs about", "the final solve", "--final-solve false"],
    );
    let out = run(&[
        "fit",
        "--train",
        &train,
        "--target",
        "y",
        "--max-memory",
        "lots",
    ]);
    assert!(!out.status.success());
    assert_mentions(
        &String::from_utf8_lossy(&out.stderr),
        &["--max-memory", "lots"],
    );
}

#[test]
fn the_same_fit_gives_the_same_file_whatever_the_number_of_threads() {
    let dir = Scratch::new("threads");
    // Large enough for the matrix products to be split between threads.
    let mut text = String::from("a,b,c,d,e,y\n");
    for i in 0..3000 {
        let v: Vec<f64> = (0..5)
            .map(|j| ((i * (7 + j) * 7919) % 1000) as f64 / 500.0 - 1.0)
            .collect();
        text.push_str(&format!(
            "{},{},{},{},{},{}\n",
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            (3.0 * v[0]).sin() + v[1] * v[1] + 0.1 * v[2]
        ));
    }
    let train = dir.write("train.csv", &text);
    let mut files = Vec::new();
    for threads in ["1", "2", "3", "1"] {
        let out = dir
            .path(&format!("m{}.safetensors", files.len()))
            .display()
            .to_string();
        let status = Command::new(BIN)
            .args([&fit_args(&train, &out)[..], &["--threads", threads]].concat())
            .status()
            .unwrap();
        assert!(status.success());
        files.push(std::fs::read(&out).unwrap());
    }
    assert!(
        files.iter().all(|f| *f == files[0]),
        "model files differ between thread counts"
    );
}

#[test]
fn a_run_killed_while_writing_checkpoints_never_leaves_a_partial_model() {
    let dir = Scratch::new("kill");
    let train = dir.write("train.csv", &regression_csv(400));
    let out = dir.path("m.safetensors").display().to_string();
    let mut args = fit_args(&train, &out);
    set_epochs(&mut args, "100000");
    args.extend(["--checkpoint-every", "1"]);
    // Killed at different moments: a model is rewritten every iteration, so some kills land
    // while one is being written.
    let mut checked = 0;
    for wait_ms in [40u64, 55, 70, 85, 100, 130, 160, 200] {
        let mut child = Command::new(BIN).args(&args).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        if std::path::Path::new(&out).exists() {
            // Whole or absent: the file always loads as a model.
            run_ok(&["inspect", "--model", &out]);
            checked += 1;
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        // A kill can leave a temporary file beside the model, never in its place.
        for name in leftovers {
            assert!(name.starts_with(".m.safetensors."), "{name}");
            std::fs::remove_file(dir.path(&name)).unwrap();
        }
    }
    assert!(
        checked >= 4,
        "only {checked} runs got as far as a checkpoint"
    );
}

#[test]
fn experiments_and_sweeps_check_the_memory_limit_too() {
    let e = error_of(&[
        "experiment",
        "paper-regression",
        "--seeds",
        "1",
        "--max-memory",
        "64K",
    ]);
    // The paper's size: 2000 rows per split, 100 features.
    assert_mentions(
        &e,
        &["needs about", "exact, K = 5", "64 KiB", "--max-memory"],
    );
    let e = error_of(&[
        "sweep-k",
        "--k",
        "1,50",
        "--max-memory",
        "64K",
        "--out",
        "x",
    ]);
    assert_mentions(&e, &["needs about", "K = 50", "64 KiB"]);
}

#[test]
fn experiment_can_choose_lambda_by_meta_error() {
    let dir = Scratch::new("select-by");
    let results = dir.path("r.csv").display().to_string();
    run_ok(&[
        "experiment",
        "paper-classification",
        "--settings",
        "circle flips 15%",
        "--methods",
        "uniform",
        "--seeds",
        "1",
        "--n",
        "120",
        "--n-features",
        "3",
        "--lambdas",
        "3",
        "--iterations",
        "3",
        "--final-iterations",
        "5",
        "--select-by",
        "error",
        "--quiet",
        "--results",
        &results,
    ]);
    let header = std::fs::read_to_string(Path::new(&results).with_extension("json")).unwrap();
    assert!(header.contains(", chosen by meta error"), "{header}");
    let out = run(&[
        "experiment",
        "paper-classification",
        "--select-by",
        "accuracy",
    ]);
    assert!(!out.status.success());
    assert_mentions(
        &String::from_utf8_lossy(&out.stderr),
        &["--select-by", "accuracy"],
    );
}

#[test]
fn select_by_with_a_fixed_lambda_is_refused_and_small_meta_sets_warned_about() {
    let s = Scratch::new("select-by");
    let train = s.write("train.csv", &binary_csv(120));
    let model = s.path("model.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.extend([
        "--task",
        "binary",
        "--lambda",
        "0.01",
        "--select-by",
        "error",
    ]);
    let message = error_of(&args);
    assert_mentions(&message, &["--select-by", "--lambda auto", "0.01"]);

    // 30 meta rows: warned about; the report names the meta objective the fit used.
    let mut args = fit_args(&train, &model);
    args.extend(["--task", "binary", "--json"]);
    let out = run_ok(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the meta set has 30 rows"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["meta_objective"], "balanced");
}

#[test]
fn balanced_meta_hold_out() {
    let s = Scratch::new("balanced-meta");
    // 20 rows of class 1 among 200.
    let mut text = String::from("a,b,y\n");
    for i in 0..200 {
        let a = (i as f64 * 0.37).sin() * 2.0;
        let b = (i as f64 * 0.11).cos();
        text.push_str(&format!("{a},{b},{}\n", u8::from(i % 10 == 0)));
    }
    let train = s.write("train.csv", &text);
    let model = s.path("model.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.extend(["--task", "binary", "--meta-select", "balanced", "--json"]);
    let out = run_ok(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 50 meta rows asked, 25 per class; class 1 gives at most half of its 20.
    assert_eq!(report["meta_rows"], 35);
    assert_eq!(report["training_rows"], 165);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the meta set has 35 rows"), "{stderr}");
}

/// A plot run replaces only its own files: another file in the folder stays, and a figure an
/// earlier run drew for features this model does not select is removed.
#[test]
fn plot_replaces_only_its_own_files() {
    let s = Scratch::new("plot-folder");
    let train = s.write("train.csv", &regression_csv(120));
    let full = s.path("full.safetensors").display().to_string();
    let empty = s.path("empty.safetensors").display().to_string();
    run_ok(&fit_args(&train, &full));
    // λ far above λ_max: no feature is selected.
    run_ok(&[&fit_args(&train, &empty)[..], &["--lambda", "100"]].concat());
    let plots = s.path("plots");
    std::fs::create_dir_all(&plots).unwrap();
    std::fs::write(plots.join("notes.txt"), "mine").unwrap();
    let out = plots.display().to_string();
    run_ok(&["plot", "--model", &full, "--out", &out]);
    assert!(plots.join("shape_functions.svg").is_file());
    let run = run_ok(&["plot", "--model", &empty, "--out", &out]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("selects no feature"));
    assert!(
        !plots.join("shape_functions.svg").exists(),
        "a stale figure stayed"
    );
    assert!(plots.join("weight_curve.svg").is_file());
    assert_eq!(
        std::fs::read_to_string(plots.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn class_aware_weight_net_plots_one_curve_per_class() {
    let s = Scratch::new("class-aware");
    let train = s.write("train.csv", &binary_csv(160));
    let model = s.path("model.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    args.extend([
        "--task",
        "binary",
        "--class-aware",
        "--weight-curve",
        "decreasing",
    ]);
    run_ok(&args);
    let plots = s.path("plots").display().to_string();
    run_ok(&[
        "plot", "--model", &model, "--out", &plots, "--format", "svg",
    ]);
    let curve = std::fs::read_to_string(s.path("plots/weight_curve.csv")).unwrap();
    let mut lines = curve.lines();
    assert_eq!(lines.next(), Some("class,loss,weight"));
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    for class in [0.0, 1.0] {
        let w: Vec<f64> = rows
            .iter()
            .filter(|r| r[0] == class)
            .map(|r| r[2])
            .collect();
        assert!(!w.is_empty(), "no curve for class {class}");
        assert!(w.windows(2).all(|p| p[1] <= p[0]), "class {class}: {w:?}");
    }
    let svg = std::fs::read_to_string(s.path("plots/weight_curve.svg")).unwrap();
    assert!(svg.contains("class 0") && svg.contains("class 1"));
    // A class-aware net needs a classification task.
    let reg = s.write("reg.csv", &regression_csv(60));
    let mut args = fit_args(&reg, &model);
    args.push("--class-aware");
    assert_mentions(&error_of(&args), &["--class-aware", "classification"]);
}

/// Runs a command in `dir` (for outputs named relative to it, such as `-`).
fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A small regression model in `s` (5 epochs on 120 rows), and a CSV of 10 rows to predict.
fn tiny_model(s: &Scratch) -> (String, String) {
    let train = s.write("train.csv", &regression_csv(120));
    let model = s.path("model.safetensors").display().to_string();
    let mut args = fit_args(&train, &model);
    set_epochs(&mut args, "5");
    run_ok(&args);
    (model, s.write("new.csv", &regression_csv(10)))
}

#[test]
fn an_output_in_a_missing_folder_is_refused_before_training() {
    let s = Scratch::new("out-missing-folder");
    let train = s.write("train.csv", &regression_csv(120));
    let out = s.path("missing_dir/m.safetensors").display().to_string();
    let mut args = fit_args(&train, &out);
    // Minutes of training if the check came after it.
    set_epochs(&mut args, "1000000");
    let start = std::time::Instant::now();
    let result = run(&args);
    let seconds = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(seconds < 20.0, "took {seconds} s: {stderr}");
    assert!(result.stdout.is_empty());
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: --out {out}: folder {} does not exist",
            s.path("missing_dir").display()
        )
    );
    assert!(!s.path("missing_dir").exists());
}

#[test]
fn every_command_checks_its_outputs_before_reading_its_inputs() {
    let s = Scratch::new("out-checked-first");
    let missing = s.path("no-such-input.csv").display().to_string();
    let out = |name: &str| s.path(&format!("missing_dir/{name}")).display().to_string();
    let (p, m, r, t, svg, sweep) = (
        out("p.csv"),
        out("m.safetensors"),
        out("r.csv"),
        out("t.md"),
        out("path.svg"),
        out("sweep"),
    );
    let problem = ["--train", &missing, "--meta", &missing, "--target", "y"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "predict", "--model", &missing, "--data", &missing, "--out", &p,
            ],
            "--out",
        ),
        (
            [vec!["hypergrad", "--out", m.as_str()], problem.to_vec()].concat(),
            "--out",
        ),
        (
            vec![
                "fit",
                "--train",
                &missing,
                "--target",
                "y",
                "--lambda",
                "auto",
                "--path-plot",
                &svg,
            ],
            "--path-plot",
        ),
        (vec!["sweep-k", "--out", &sweep], "--out"),
        (vec!["demo", "--out", "-"], "--out -"),
        (
            vec!["experiment", "digits", "--data", &missing, "--results", &r],
            "--results",
        ),
        (
            vec!["experiment", "digits", "--data", &missing, "--table", &t],
            "--table",
        ),
    ];
    for (args, flag) in cases {
        let e = error_of(&args);
        assert_mentions(&e, &[flag]);
        if flag != "--out -" {
            assert_mentions(&e, &["missing_dir does not exist"]);
        }
        assert!(!e.contains("no-such-input"), "{args:?}: {e}");
    }
}

#[test]
fn a_folder_as_an_output_file_is_refused() {
    let s = Scratch::new("out-folder");
    let train = s.write("train.csv", &regression_csv(120));
    let folder = s.path("models");
    std::fs::create_dir(&folder).unwrap();
    let folder = folder.display().to_string();
    let e = error_of(&fit_args(&train, &folder));
    assert_mentions(&e, &[&format!("--out {folder}"), "is a folder"]);
    assert!(!e.contains("Not a directory"), "{e}");
    // A plot folder that is a file is refused too.
    let e = error_of(&["plot", "--model", &train, "--out", &train]);
    assert_mentions(&e, &["--out", "not a folder"]);
}

#[cfg(unix)]
#[test]
fn a_read_only_output_is_refused_and_left_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("out-read-only");
    let (model, data) = tiny_model(&s);
    let locked = s.path("locked.csv");
    std::fs::write(&locked, "keep me\n").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o444)).unwrap();
    let locked_text = locked.display().to_string();
    let e = error_of(&[
        "predict",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        &locked_text,
    ]);
    assert_mentions(&e, &[&format!("--out {locked_text}"), "read-only"]);
    assert_eq!(std::fs::read_to_string(&locked).unwrap(), "keep me\n");
    let mode = std::fs::metadata(&locked).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444);
    // The same for a model: refused before training.
    let train = s.path("train.csv").display().to_string();
    let e = error_of(&fit_args(&train, &locked_text));
    assert_mentions(&e, &["read-only"]);
    assert_eq!(std::fs::read_to_string(&locked).unwrap(), "keep me\n");
}

#[cfg(unix)]
#[test]
fn a_symlinked_model_path_keeps_the_link_and_its_target_gets_the_new_bytes() {
    let s = Scratch::new("out-symlink");
    let train = s.write("train.csv", &regression_csv(120));
    std::fs::create_dir(s.path("store")).unwrap();
    let target = s.path("store/real.safetensors");
    std::fs::write(&target, b"old model").unwrap();
    let link = s.path("model.safetensors");
    std::os::unix::fs::symlink("store/real.safetensors", &link).unwrap();
    run_ok(&fit_args(&train, &link.display().to_string()));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    // The same fit written to a plain file: the target holds exactly its bytes.
    let plain = s.path("plain.safetensors").display().to_string();
    run_ok(&fit_args(&train, &plain));
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&plain).unwrap()
    );
    // No temporary file left beside the link or the target.
    assert_eq!(std::fs::read_dir(s.path("store")).unwrap().count(), 1);
}

#[test]
fn a_dash_is_standard_output_for_predictions_and_refused_for_a_model() {
    let s = Scratch::new("out-dash");
    let (model, data) = tiny_model(&s);
    let plain = run_ok(&["predict", "--model", &model, "--data", &data]);
    assert!(!plain.stdout.is_empty());
    let dash = run_in(
        &s.0,
        &["predict", "--model", &model, "--data", &data, "--out", "-"],
    );
    assert!(dash.status.success());
    assert_eq!(dash.stdout, plain.stdout);
    assert!(!s.path("-").exists());
    // /dev/stdout (a pipe here) is written in place and still prints.
    #[cfg(target_os = "linux")]
    {
        let out = run_ok(&[
            "predict",
            "--model",
            &model,
            "--data",
            &data,
            "--out",
            "/dev/stdout",
        ]);
        assert_eq!(out.stdout, plain.stdout);
    }
    let train = s.path("train.csv").display().to_string();
    let e = error_of(&fit_args(&train, "-"));
    assert_mentions(&e, &["--out -", "binary", "standard output"]);
}

#[cfg(unix)]
#[test]
fn a_fifo_is_written_directly() {
    use std::os::unix::fs::FileTypeExt;
    let s = Scratch::new("out-fifo");
    let (model, data) = tiny_model(&s);
    let fifo = s.path("predictions.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let fifo_text = fifo.display().to_string();
    run_ok(&[
        "predict", "--model", &model, "--data", &data, "--out", &fifo_text,
    ]);
    let received = reader.join().unwrap();
    let plain = run_ok(&["predict", "--model", &model, "--data", &data]);
    assert_eq!(received, plain.stdout);
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[cfg(unix)]
#[test]
fn dev_null_is_accepted_as_an_output() {
    use std::os::unix::fs::FileTypeExt;
    let s = Scratch::new("out-dev-null");
    let (model, data) = tiny_model(&s);
    let out = run_ok(&[
        "predict",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        "/dev/null",
    ]);
    assert!(out.stdout.is_empty());
    let train = s.path("train.csv").display().to_string();
    let mut args = fit_args(&train, "/dev/null");
    set_epochs(&mut args, "5");
    run_ok(&args);
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device());
}

#[test]
fn experiment_shards_merged_give_the_one_runs_table() {
    let dir = Scratch::new("shards");
    let base = [
        "experiment",
        "paper-regression",
        "--settings",
        "noise B,SpAM design",
        "--methods",
        "uniform,mam(2)",
        "--seeds",
        "2",
        "--n",
        "80",
        "--n-features",
        "9",
        "--lambda",
        "0.01",
        "--iterations",
        "5",
        "--quiet",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let one = dir.path("one.csv").display().to_string();
    let args = with(&["--results", &one]);
    let whole = run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Shards 0 and 1 by the flag, shard 2 from a Slurm job array's variables (IDs 1–3).
    let sharded = dir.path("sharded.csv").display().to_string();
    for shard in ["0/3", "1/3"] {
        let args = with(&["--results", &sharded, "--shard", shard]);
        run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let args = with(&["--results", &sharded]);
    let out = Command::new(BIN)
        .args(&args)
        .env("SLURM_ARRAY_TASK_ID", "3")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<String> = (0..3)
        .map(|i| {
            dir.path(&format!("sharded.shard-{i}-of-3.csv"))
                .display()
                .to_string()
        })
        .collect();
    // 8 fits: 3 + 3 + 2, each in its shard's own file.
    let lines: Vec<usize> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count() - 1)
        .collect();
    assert_eq!(lines.iter().sum::<usize>(), 8);
    assert!(lines.iter().all(|&l| l == 2 || l == 3), "{lines:?}");
    let merged = dir.path("merged.csv").display().to_string();
    let mut args = with(&["--results", &merged, "--merge"]);
    args.extend(files.iter().cloned());
    let out = run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // The same table (but the seconds per fit, the last column) and the same records.
    let strip = |text: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(text)
            .lines()
            .map(|l| l.rsplitn(3, '|').nth(2).unwrap_or(l).to_string())
            .collect()
    };
    assert_eq!(strip(&out.stdout), strip(&whole.stdout));
    let records = |path: &str| -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let seconds = header.iter().position(|c| *c == "seconds").unwrap();
        text.lines()
            .map(|l| {
                let mut cells: Vec<&str> = l.split(',').collect();
                cells.remove(seconds);
                cells.join(",")
            })
            .collect()
    };
    assert_eq!(records(&merged), records(&one));
    // A missing shard, or a shard of another experiment, is named.
    let mut args = with(&["--merge"]);
    args.extend(files[..2].iter().cloned());
    let e = error_of(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_mentions(&e, &["missing shard 2/3"]);
    let mut args: Vec<String> = with(&["--merge"])
        .into_iter()
        .map(|a| if a == "5" { "6".to_string() } else { a })
        .collect();
    args.extend(files.iter().cloned());
    let e = error_of(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_mentions(&e, &["not a shard of this experiment"]);
    let out = run(&["experiment", "paper-regression", "--shard", "3/3"]);
    assert!(!out.status.success());
    assert_mentions(&String::from_utf8_lossy(&out.stderr), &["3/3", "0 ≤ I < N"]);
}

#[test]
fn sweep_k_shards_merged_give_the_one_runs_rows() {
    let s = Scratch::new("sweep-shards");
    let base = [
        "sweep-k",
        "--k",
        "1,4",
        "--modes",
        "exact,truncated(2),one-step",
        "--n",
        "120",
        "--n-features",
        "8",
        "--iterations",
        "6",
        "--hidden",
        "8",
        "--snapshots",
        "2",
        "--quiet",
        "--out",
    ];
    let with = |prefix: &str, extra: &[&str]| -> Vec<String> {
        base.iter()
            .map(|a| a.to_string())
            .chain(std::iter::once(prefix.to_string()))
            .chain(extra.iter().map(|a| a.to_string()))
            .collect()
    };
    let call = |args: &[String]| run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let one = s.path("one").display().to_string();
    call(&with(&one, &[]));
    let part = s.path("part").display().to_string();
    for shard in ["0/3", "1/3", "2/3"] {
        call(&with(&part, &["--shard", shard]));
    }
    let files: Vec<String> = (0..3)
        .map(|i| format!("{part}.shard-{i}-of-3.csv"))
        .collect();
    let merged = s.path("merged").display().to_string();
    let mut args = with(&merged, &["--merge"]);
    args.extend(files.iter().cloned());
    call(&args);
    // The same runs in the same order with the same accuracy, meta loss and test error (the
    // seconds and peaks are measurements of their own run).
    let rows = |prefix: &str| -> Vec<String> {
        std::fs::read_to_string(format!("{prefix}.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(rows(&merged), rows(&one));
    // exact at both depths, truncated(2) at K = 4 only, one-step once.
    assert_eq!(rows(&one).len(), 1 + 2 + 1 + 1);
    assert!(Path::new(&format!("{merged}.svg")).exists());
    // A shard run with other settings is refused.
    let mut args: Vec<String> = with(&merged, &["--merge"])
        .into_iter()
        .map(|a| if a == "6" { "7".to_string() } else { a })
        .collect();
    args.extend(files.iter().cloned());
    let e = error_of(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_mentions(&e, &["not a shard of this sweep"]);
    let mut args = with(&merged, &["--merge"]);
    args.extend(files[1..].iter().cloned());
    let e = error_of(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_mentions(&e, &["missing shard 0/3"]);
}
