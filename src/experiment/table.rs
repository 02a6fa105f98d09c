//! The markdown table of an experiment's records: mean ± sd over seeds per setting and method.

use crate::experiment::results::Record;

/// A markdown table: one row per setting and method (in the order of `records`), with mean ± sd
/// over seeds of the test metric(s), selected features, true and false positives, and the mean
/// seconds per fit.
pub fn table(records: &[Record]) -> String {
    let mut groups: Vec<((String, String), Vec<&Record>)> = Vec::new();
    for r in records {
        let key = (r.setting.clone(), r.method.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let regression = records.iter().any(|r| r.test_mse.is_some());
    let classification = records.iter().any(|r| r.accuracy.is_some());
    let mut headers = vec!["setting", "method", "seeds"];
    if regression {
        headers.push("test MSE");
    }
    if classification {
        headers.extend(["accuracy", "macro-F1"]);
    }
    headers.extend(["selected", "true pos.", "false pos.", "s / fit"]);
    let mut out = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for ((setting, method), rows) in &groups {
        let floats = |get: &dyn Fn(&Record) -> Option<f64>, digits: usize| -> String {
            let v: Vec<f64> = rows.iter().filter_map(|r| get(r)).collect();
            if v.is_empty() {
                "–".into()
            } else {
                mean_sd(&v, digits)
            }
        };
        let counts = |get: &dyn Fn(&Record) -> Option<usize>| -> String {
            let v: Vec<f64> = rows
                .iter()
                .filter_map(|r| get(r))
                .map(|c| c as f64)
                .collect();
            if v.is_empty() {
                "–".into()
            } else {
                mean_sd(&v, 1)
            }
        };
        let mut cells = vec![setting.clone(), method.clone(), rows.len().to_string()];
        if regression {
            cells.push(floats(&|r| r.test_mse, 4));
        }
        if classification {
            cells.push(floats(&|r| r.accuracy, 3));
            cells.push(floats(&|r| r.macro_f1, 3));
        }
        cells.push(counts(&|r| Some(r.selected)));
        cells.push(counts(&|r| r.true_positives));
        cells.push(counts(&|r| r.false_positives));
        let seconds: f64 = rows.iter().map(|r| r.seconds).sum::<f64>() / rows.len() as f64;
        cells.push(format!("{seconds:.1}"));
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// `mean ± sd` (sample sd; 0 for one value) with `digits` decimals.
///
/// ```
/// assert_eq!(metaadd::experiment::mean_sd(&[1.0, 2.0, 3.0], 2), "2.00 ± 1.00");
/// ```
pub fn mean_sd(values: &[f64], digits: usize) -> String {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    format!("{mean:.digits$} ± {sd:.digits$}")
}
