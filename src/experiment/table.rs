//! The markdown table of an experiment's records: mean ± sd over seeds per setting and method.

use crate::experiment::results::Record;

/// A markdown table: one row per setting and method (in the order of `records`), with mean ± sd
/// over seeds of the test metric(s), selected features, true and false positives, and the mean
/// seconds per fit; where the records have them, balanced accuracy and ROC-AUC, the selection
/// stability across seeds ([`stability`]) and the weightings `auto` methods chose.
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
    let balanced = records.iter().any(|r| r.balanced_accuracy.is_some());
    let auc = records.iter().any(|r| r.roc_auc.is_some());
    if balanced {
        headers.push("balanced acc.");
    }
    if auc {
        headers.push("ROC-AUC");
    }
    headers.extend(["selected", "true pos.", "false pos."]);
    let stable = records.iter().all(|r| r.features.is_some());
    if stable {
        headers.push("stability");
    }
    let auto = records.iter().any(|r| r.method.contains("(auto)"));
    if auto {
        headers.push("chosen");
    }
    headers.push("s / fit");
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
        if balanced {
            cells.push(floats(&|r| r.balanced_accuracy, 3));
        }
        if auc {
            cells.push(floats(&|r| r.roc_auc, 3));
        }
        cells.push(counts(&|r| Some(r.selected)));
        cells.push(counts(&|r| r.true_positives));
        cells.push(counts(&|r| r.false_positives));
        if stable {
            let sets: Vec<&[usize]> = rows.iter().filter_map(|r| r.features.as_deref()).collect();
            cells.push(stability(&sets).map_or("–".into(), |s| format!("{s:.2}")));
        }
        if auto {
            cells.push(if method.contains("(auto)") {
                chosen(rows)
            } else {
                "–".into()
            });
        }
        let seconds: f64 = rows.iter().map(|r| r.seconds).sum::<f64>() / rows.len() as f64;
        cells.push(format!("{seconds:.1}"));
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Selection stability across seeds: the mean Jaccard index `|A ∩ B| / |A ∪ B|` over all pairs
/// of selected-feature sets (1: every seed selects the same features; two empty sets count as
/// equal). `None` with fewer than two sets.
///
/// ```
/// use metaadd::experiment::stability;
/// assert_eq!(stability(&[&[0, 1], &[0, 1]]), Some(1.0));
/// assert_eq!(stability(&[&[0, 1], &[1, 2]]), Some(1.0 / 3.0));
/// assert_eq!(stability(&[&[0]]), None);
/// ```
pub fn stability(sets: &[&[usize]]) -> Option<f64> {
    if sets.len() < 2 {
        return None;
    }
    let mut total = 0.0;
    let mut pairs = 0.0;
    for (i, a) in sets.iter().enumerate() {
        for b in &sets[i + 1..] {
            let common = a.iter().filter(|j| b.contains(j)).count();
            let union = a.len() + b.len() - common;
            total += if union == 0 {
                1.0
            } else {
                common as f64 / union as f64
            };
            pairs += 1.0;
        }
    }
    Some(total / pairs)
}

/// The weightings chosen over the seeds, most frequent first: `tilted(-1)×3, tilted(-0.5)×2`.
fn chosen(rows: &[&Record]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in rows {
        let w = r.weighting.clone().unwrap_or_else(|| "?".into());
        match counts.iter_mut().find(|(k, _)| *k == w) {
            Some((_, n)) => *n += 1,
            None => counts.push((w, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .map(|(w, n)| format!("{w}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
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
