//! Scores of predictions against the truth: regression errors (MSE, MAE, R²) and
//! classification scores (accuracy, macro F1, balanced accuracy, ROC AUC, log loss), as pure
//! functions on plain slices, plus the summaries [`RegressionScores`] and
//! [`ClassificationScores`] used by the CLI and the library reports.
//!
//! Conventions shared by every function here:
//!
//! * Rows are paired by index. When two slices have different lengths only the first
//!   `min(len)` rows are scored and the extra rows of the longer slice are ignored; nothing
//!   here panics on mismatched lengths.
//! * A score that is undefined for its input (empty input, a constant target, a single class)
//!   is `NaN`, or `None` for the ROC AUC functions.
//! * Class labels are indices; probability rows `proba[i]` hold one entry per class, and a
//!   class beyond the end of a row counts as probability `0.0` for that row.
//! * The definitions follow scikit-learn's `sklearn.metrics` (the tests hold reference values
//!   computed with it); differences are noted on the function concerned.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The `q`-quantile of the finite `values` (linear interpolation between order statistics, as
/// numpy's default); `NaN` when none is finite.
///
/// ```
/// assert_eq!(metaadd::evaluate::quantile(&[3.0, 1.0, 2.0, f64::NAN], 0.5), 2.0);
/// assert_eq!(metaadd::evaluate::quantile(&[0.0, 10.0], 0.99), 9.9);
/// ```
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (i, t) = (at.floor() as usize, at.fract());
    v[i] + t * (v[(i + 1).min(v.len() - 1)] - v[i])
}

/// Probabilities are clipped to `[LOG_LOSS_EPS, 1 − LOG_LOSS_EPS]` by [`log_loss`].
const LOG_LOSS_EPS: f64 = 1e-15;

/// Mean squared error between predictions and targets (`NaN` for empty input).
///
/// With slices of different lengths only the first `min(len)` rows are scored.
///
/// ```
/// assert_eq!(metaadd::evaluate::mse(&[1.0, 2.0], &[1.0, 4.0]), 2.0);
/// ```
pub fn mse(predictions: &[f64], targets: &[f64]) -> f64 {
    let n = predictions.len().min(targets.len());
    predictions
        .iter()
        .zip(targets)
        .map(|(p, y)| (p - y).powi(2))
        .sum::<f64>()
        / n as f64
}

/// Mean absolute error between predictions and targets (`NaN` for empty input).
///
/// With slices of different lengths only the first `min(len)` rows are scored.
///
/// ```
/// assert_eq!(metaadd::evaluate::mae(&[1.0, 2.0], &[2.0, 4.0]), 1.5);
/// ```
pub fn mae(predictions: &[f64], targets: &[f64]) -> f64 {
    let n = predictions.len().min(targets.len());
    predictions
        .iter()
        .zip(targets)
        .map(|(p, y)| (p - y).abs())
        .sum::<f64>()
        / n as f64
}

/// Coefficient of determination `1 − SS_res / SS_tot`, as scikit-learn's `r2_score`.
///
/// `SS_res` is the sum of squared errors and `SS_tot` the sum of squared deviations of the
/// targets from their mean. Returns `NaN` for fewer than two rows or a constant target (where
/// scikit-learn would return 1.0 or 0.0 instead). With slices of different lengths only the
/// first `min(len)` rows are scored.
///
/// ```
/// assert_eq!(metaadd::evaluate::r2(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 1.0);
/// ```
pub fn r2(predictions: &[f64], targets: &[f64]) -> f64 {
    let n = predictions.len().min(targets.len());
    if n < 2 {
        return f64::NAN;
    }
    let (predictions, targets) = (&predictions[..n], &targets[..n]);
    if targets.iter().all(|&y| y == targets[0]) {
        return f64::NAN;
    }
    let mean = targets.iter().sum::<f64>() / n as f64;
    let ss_tot = targets.iter().map(|y| (y - mean).powi(2)).sum::<f64>();
    let ss_res = predictions
        .iter()
        .zip(targets)
        .map(|(p, y)| (y - p).powi(2))
        .sum::<f64>();
    1.0 - ss_res / ss_tot
}

/// Fraction of labels predicted correctly (`NaN` for empty input).
///
/// With slices of different lengths only the first `min(len)` rows are scored.
///
/// ```
/// assert_eq!(metaadd::evaluate::accuracy(&[0, 1, 1, 0], &[0, 1, 0, 0]), 0.75);
/// ```
pub fn accuracy(predicted: &[usize], truth: &[usize]) -> f64 {
    let n = predicted.len().min(truth.len());
    predicted.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / n as f64
}

/// Per-class counts of one label pairing: true positives, times predicted, times true.
#[derive(Default)]
struct ClassCounts {
    hits: usize,
    predicted: usize,
    actual: usize,
}

/// Confusion counts of the classes `0..classes` that occur in `predicted` or `truth` (over the
/// first `min(len)` rows), in ascending class order.
fn class_counts(
    predicted: &[usize],
    truth: &[usize],
    classes: usize,
) -> BTreeMap<usize, ClassCounts> {
    let mut counts = BTreeMap::<usize, ClassCounts>::new();
    for (&p, &t) in predicted.iter().zip(truth) {
        if p < classes {
            let entry = counts.entry(p).or_default();
            entry.predicted += 1;
            if p == t {
                entry.hits += 1;
            }
        }
        if t < classes {
            counts.entry(t).or_default().actual += 1;
        }
    }
    counts
}

/// Macro-averaged F1 over the classes `0..classes`; a class that appears in neither slice is
/// skipped (scikit-learn's `f1_score(average="macro")` with its default labels).
///
/// A class that appears only as a prediction or only in the truth scores 0. Labels
/// `>= classes` are no class of their own but still count as errors of the classes they were
/// confused with. Returns 0 when no class of `0..classes` appears (including empty input).
/// With slices of different lengths only the first `min(len)` rows are scored.
///
/// ```
/// let f1 = metaadd::evaluate::macro_f1(&[0, 1, 1, 0], &[0, 1, 0, 0], 2);
/// assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
/// ```
pub fn macro_f1(predicted: &[usize], truth: &[usize], classes: usize) -> f64 {
    let counts = class_counts(predicted, truth, classes);
    let total = counts
        .values()
        .map(|c| 2.0 * c.hits as f64 / (c.predicted + c.actual) as f64)
        .fold(0.0, |sum, f1| sum + f1);
    total / counts.len().max(1) as f64
}

/// Mean per-class recall over the classes of `0..classes` present in `truth`, as
/// scikit-learn's `balanced_accuracy_score` (`NaN` when no such class is present).
///
/// Classes that are only predicted, never true, do not count (scikit-learn warns about them
/// and drops them too). With slices of different lengths only the first `min(len)` rows are
/// scored.
///
/// ```
/// // recall 1/2 for class 0 and 1/1 for class 1
/// assert_eq!(metaadd::evaluate::balanced_accuracy(&[0, 1, 1], &[0, 0, 1], 2), 0.75);
/// ```
pub fn balanced_accuracy(predicted: &[usize], truth: &[usize], classes: usize) -> f64 {
    let counts = class_counts(predicted, truth, classes);
    let (total, present) = counts
        .values()
        .filter(|c| c.actual > 0)
        .fold((0.0, 0usize), |(sum, present), c| {
            (sum + c.hits as f64 / c.actual as f64, present + 1)
        });
    total / present as f64
}

/// Area under the ROC curve of `(score, is_positive)` pairs: the Mann–Whitney probability that
/// a random positive scores above a random negative, ties counting one half. `None` unless both
/// positives and negatives are present. O(n log n).
fn binary_auc(mut pairs: Vec<(f64, bool)>) -> Option<f64> {
    let positives = pairs.iter().filter(|&&(_, positive)| positive).count() as u128;
    let negatives = pairs.len() as u128 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let tied = |a: f64, b: f64| a == b || a.total_cmp(&b) == Ordering::Equal;
    // Twice the Mann–Whitney U statistic, kept integral so the result is rounded only once.
    let (mut twice_u, mut negatives_below) = (0u128, 0u128);
    let mut start = 0;
    while start < pairs.len() {
        let score = pairs[start].0;
        let (mut group_positives, mut group_negatives) = (0u128, 0u128);
        let mut end = start;
        while end < pairs.len() && tied(pairs[end].0, score) {
            if pairs[end].1 {
                group_positives += 1;
            } else {
                group_negatives += 1;
            }
            end += 1;
        }
        twice_u += group_positives * (2 * negatives_below + group_negatives);
        negatives_below += group_negatives;
        start = end;
    }
    Some(twice_u as f64 / (2 * positives * negatives) as f64)
}

/// Binary ROC AUC of `scores` (the score of class 1) against `truth`, as scikit-learn's
/// `roc_auc_score`; `None` when only one class is present.
///
/// Label 1 is the positive class and every other label counts as negative (`truth` should hold
/// only 0 and 1). Computed as the Mann–Whitney U statistic in O(n log n): the probability that
/// a random positive scores above a random negative, tied scores counting one half. Scores are
/// ordered by [`f64::total_cmp`], so a NaN score never panics (a positive NaN ranks above every
/// number). With slices of different lengths only the first `min(len)` rows are scored.
///
/// ```
/// let auc = metaadd::evaluate::roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]);
/// assert_eq!(auc, Some(0.75));
/// ```
pub fn roc_auc(scores: &[f64], truth: &[usize]) -> Option<f64> {
    binary_auc(
        scores
            .iter()
            .zip(truth)
            .map(|(&s, &t)| (s, t == 1))
            .collect(),
    )
}

/// Multi-class ROC AUC: the unweighted mean of the one-vs-rest AUCs (as in [`roc_auc`]) of the
/// classes present in `truth`, scoring class `c` by `proba[i][c]`; `None` when fewer than two
/// classes are present.
///
/// Agrees with scikit-learn's `roc_auc_score(multi_class="ovr", average="macro")` when every
/// column's class is present in `truth`; classes absent from `truth` are skipped here, where
/// scikit-learn rejects the input or returns NaN. Rows are not required to sum to one, and a
/// class beyond the end of a row scores 0 there. With slices of different lengths only the
/// first `min(len)` rows are scored.
///
/// ```
/// let proba = vec![vec![0.8, 0.1, 0.1], vec![0.2, 0.7, 0.1], vec![0.3, 0.3, 0.4]];
/// assert_eq!(metaadd::evaluate::roc_auc_ovr(&proba, &[0, 1, 2]), Some(1.0));
/// ```
pub fn roc_auc_ovr(proba: &[Vec<f64>], truth: &[usize]) -> Option<f64> {
    let n = proba.len().min(truth.len());
    let (proba, truth) = (&proba[..n], &truth[..n]);
    let mut present = truth.to_vec();
    present.sort_unstable();
    present.dedup();
    if present.len() < 2 {
        return None;
    }
    let mut total = 0.0;
    for &class in &present {
        let pairs = proba
            .iter()
            .zip(truth)
            .map(|(row, &t)| (row.get(class).copied().unwrap_or(0.0), t == class))
            .collect();
        // Every present class has positives, and negatives since another class is present.
        total += binary_auc(pairs)?;
    }
    Some(total / present.len() as f64)
}

/// Mean negative log-likelihood `−ln proba[i][truth[i]]` (cross-entropy; `NaN` for empty
/// input).
///
/// Each probability is clipped to `[1e-15, 1 − 1e-15]` first, as scikit-learn's `log_loss`
/// did up to version 1.4 (later versions clip to the machine epsilon, ≈ 2.2e-16), so a
/// confident mistake costs at most ≈ 34.5. Rows are not renormalised, and a class beyond the
/// end of its row has probability 0. With slices of different lengths only the first
/// `min(len)` rows are scored.
///
/// ```
/// let loss = metaadd::evaluate::log_loss(&[vec![0.5, 0.5], vec![0.0, 1.0]], &[0, 1]);
/// assert!((loss - 2f64.ln() / 2.0).abs() < 1e-12);
/// ```
pub fn log_loss(proba: &[Vec<f64>], truth: &[usize]) -> f64 {
    let n = proba.len().min(truth.len());
    proba
        .iter()
        .zip(truth)
        .map(|(row, &t)| {
            let p = row.get(t).copied().unwrap_or(0.0);
            -p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS).ln()
        })
        .sum::<f64>()
        / n as f64
}

/// Scores of a regression model on labelled rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionScores {
    /// Mean squared error, see [`mse`].
    pub mse: f64,
    /// Mean absolute error, see [`mae`].
    pub mae: f64,
    /// Coefficient of determination, see [`r2`].
    pub r2: f64,
}

impl RegressionScores {
    /// Scores `predictions` against `targets` (the first `min(len)` rows of each).
    ///
    /// ```
    /// let scores = metaadd::evaluate::RegressionScores::new(&[0.5, 1.5], &[0.0, 2.0]);
    /// assert_eq!((scores.mse, scores.mae, scores.r2), (0.25, 0.5, 0.75));
    /// ```
    pub fn new(predictions: &[f64], targets: &[f64]) -> Self {
        RegressionScores {
            mse: mse(predictions, targets),
            mae: mae(predictions, targets),
            r2: r2(predictions, targets),
        }
    }

    /// `(name, value)` pairs in the fixed order `mse`, `mae`, `r2`, for reports.
    ///
    /// ```
    /// let scores = metaadd::evaluate::RegressionScores::new(&[0.5, 1.5], &[0.0, 2.0]);
    /// assert_eq!(scores.pairs(), vec![("mse", 0.25), ("mae", 0.5), ("r2", 0.75)]);
    /// ```
    pub fn pairs(&self) -> Vec<(&'static str, f64)> {
        vec![("mse", self.mse), ("mae", self.mae), ("r2", self.r2)]
    }
}

/// Scores of a classifier on labelled rows (class indices 0..classes).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationScores {
    /// Fraction of rows whose predicted class is right, see [`accuracy`].
    pub accuracy: f64,
    /// Macro-averaged F1, see [`macro_f1`].
    pub macro_f1: f64,
    /// Mean per-class recall, see [`balanced_accuracy`].
    pub balanced_accuracy: f64,
    /// ROC AUC (binary, or one-vs-rest macro average), `None` when fewer than two classes are
    /// present in the truth; see [`roc_auc`] and [`roc_auc_ovr`].
    pub roc_auc: Option<f64>,
    /// Mean negative log-likelihood of the true class, see [`log_loss`].
    pub log_loss: f64,
}

/// Index of the largest entry of `row`, the first one on ties; NaN entries lose to any number
/// and an empty row gives 0.
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &p) in row.iter().enumerate().skip(1) {
        if p > row[best] || (row[best].is_nan() && !p.is_nan()) {
            best = i;
        }
    }
    best
}

impl ClassificationScores {
    /// `proba[i]` holds the class probabilities of row i (C entries, C ≥ 2); predicted class =
    /// argmax (first on ties); `roc_auc` = binary AUC on `proba[i][1]` when C == 2, else
    /// one-vs-rest macro.
    ///
    /// C is the length of the longest row. The classes counted by [`macro_f1`] and
    /// [`balanced_accuracy`] are `0..max(C, largest true label + 1)`. NaN probabilities never
    /// win the argmax unless the whole row is NaN. With slices of different lengths only the
    /// first `min(len)` rows are scored.
    ///
    /// ```
    /// let proba = vec![vec![0.9, 0.1], vec![0.4, 0.6], vec![0.6, 0.4]];
    /// let scores = metaadd::evaluate::ClassificationScores::new(&proba, &[0, 1, 1]);
    /// // predicted classes 0, 1, 0
    /// assert!((scores.accuracy - 2.0 / 3.0).abs() < 1e-12);
    /// assert_eq!(scores.roc_auc, Some(1.0));
    /// ```
    pub fn new(proba: &[Vec<f64>], truth: &[usize]) -> Self {
        let n = proba.len().min(truth.len());
        let (proba, truth) = (&proba[..n], &truth[..n]);
        let columns = proba.iter().map(Vec::len).max().unwrap_or(0);
        let classes = truth
            .iter()
            .map(|&t| t.saturating_add(1))
            .fold(columns, usize::max);
        let predicted: Vec<usize> = proba.iter().map(|row| argmax(row)).collect();
        let roc = if columns == 2 {
            let scores: Vec<f64> = proba
                .iter()
                .map(|row| row.get(1).copied().unwrap_or(0.0))
                .collect();
            roc_auc(&scores, truth)
        } else {
            roc_auc_ovr(proba, truth)
        };
        ClassificationScores {
            accuracy: accuracy(&predicted, truth),
            macro_f1: macro_f1(&predicted, truth, classes),
            balanced_accuracy: balanced_accuracy(&predicted, truth, classes),
            roc_auc: roc,
            log_loss: log_loss(proba, truth),
        }
    }

    /// `(name, value)` pairs in the fixed order `accuracy`, `macro_f1`, `balanced_accuracy`,
    /// `roc_auc`, `log_loss`, for reports; `roc_auc` is omitted when it is `None`.
    ///
    /// ```
    /// let proba = vec![vec![0.9, 0.1], vec![0.2, 0.8]];
    /// let scores = metaadd::evaluate::ClassificationScores::new(&proba, &[0, 1]);
    /// let names: Vec<&str> = scores.pairs().iter().map(|&(name, _)| name).collect();
    /// assert_eq!(names, ["accuracy", "macro_f1", "balanced_accuracy", "roc_auc", "log_loss"]);
    /// ```
    pub fn pairs(&self) -> Vec<(&'static str, f64)> {
        let mut pairs = vec![
            ("accuracy", self.accuracy),
            ("macro_f1", self.macro_f1),
            ("balanced_accuracy", self.balanced_accuracy),
        ];
        if let Some(auc) = self.roc_auc {
            pairs.push(("roc_auc", auc));
        }
        pairs.push(("log_loss", self.log_loss));
        pairs
    }
}

/// The scores of a model on labelled rows: regression or classification.
///
/// ```
/// use metaadd::evaluate::Scores;
/// let s = Scores::regression(&[1.0, 2.0], &[1.0, 4.0]);
/// assert_eq!(s.pairs()[0], ("mse", 2.0));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Scores {
    /// MSE, MAE and R² in the target's units.
    Regression(RegressionScores),
    /// Accuracy, macro-F1, balanced accuracy, ROC-AUC and log-loss.
    Classification(ClassificationScores),
}

impl Scores {
    /// Scores of regression predictions.
    pub fn regression(predictions: &[f64], targets: &[f64]) -> Self {
        Self::Regression(RegressionScores::new(predictions, targets))
    }

    /// Scores of class probabilities against true class indices.
    pub fn classification(proba: &[Vec<f64>], truth: &[usize]) -> Self {
        Self::Classification(ClassificationScores::new(proba, truth))
    }

    /// `(name, value)` pairs in a fixed order, snake_case names.
    pub fn pairs(&self) -> Vec<(&'static str, f64)> {
        match self {
            Self::Regression(s) => s.pairs(),
            Self::Classification(s) => s.pairs(),
        }
    }

    /// The regression scores, if these are.
    pub fn as_regression(&self) -> Option<&RegressionScores> {
        match self {
            Self::Regression(s) => Some(s),
            Self::Classification(_) => None,
        }
    }

    /// The classification scores, if these are.
    pub fn as_classification(&self) -> Option<&ClassificationScores> {
        match self {
            Self::Classification(s) => Some(s),
            Self::Regression(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts `actual` is within `tol` of `expected`.
    fn close(actual: f64, expected: f64, tol: f64) {
        assert!(
            (actual - expected).abs() <= tol,
            "{actual} differs from {expected} by more than {tol}"
        );
    }

    /// Probability rows `w / w.sum()` (the same IEEE divisions as NumPy's).
    fn normalise<const C: usize>(weights: &[[u32; C]]) -> Vec<Vec<f64>> {
        weights
            .iter()
            .map(|w| {
                let sum = w.iter().sum::<u32>() as f64;
                w.iter().map(|&x| x as f64 / sum).collect()
            })
            .collect()
    }

    // ---- hand-checked cases ----

    #[test]
    fn regression_hand_checked() {
        let p = [1.0, 2.0, 3.0, 4.0];
        let y = [2.0, 2.0, 1.0, 5.0];
        close(mse(&p, &y), (1.0 + 0.0 + 4.0 + 1.0) / 4.0, 1e-15);
        close(mae(&p, &y), (1.0 + 0.0 + 2.0 + 1.0) / 4.0, 1e-15);
        // mean 2.5, SS_tot = 0.25 + 0.25 + 2.25 + 6.25 = 9, SS_res = 6
        close(r2(&p, &y), 1.0 - 6.0 / 9.0, 1e-15);
        assert_eq!(r2(&y, &y), 1.0);
        // predicting the mean scores 0
        assert_eq!(r2(&[2.5; 4], &y), 0.0);
    }

    #[test]
    fn regression_degenerate_inputs() {
        assert!(mse(&[], &[]).is_nan());
        assert!(mae(&[], &[]).is_nan());
        assert!(r2(&[], &[]).is_nan());
        assert!(r2(&[1.0], &[2.0]).is_nan());
        // constant target, even one whose mean is not exactly representable
        assert!(r2(&[0.1, 0.2, 0.3], &[0.1, 0.1, 0.1]).is_nan());
        assert!(r2(&[0.1, 0.1], &[0.1, 0.1]).is_nan());
    }

    #[test]
    fn mismatched_lengths_use_the_shorter() {
        assert_eq!(mse(&[1.0, 2.0, 100.0], &[1.0, 4.0]), 2.0);
        assert_eq!(mae(&[1.0, 2.0], &[2.0, 4.0, 100.0]), 1.5);
        assert_eq!(r2(&[1.0, 2.0, 9.0], &[1.0, 2.0]), 1.0);
        assert_eq!(accuracy(&[0, 1, 1], &[0, 1]), 1.0);
        assert_eq!(macro_f1(&[0, 1], &[0, 1, 2, 2], 3), 1.0);
        assert_eq!(balanced_accuracy(&[0, 1, 0, 0], &[0, 1], 2), 1.0);
        assert_eq!(roc_auc(&[0.1, 0.9, 0.0], &[0, 1]), Some(1.0));
        assert_eq!(roc_auc(&[0.1, 0.9], &[0, 1, 1]), Some(1.0));
        let proba = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![1.0, 0.0]];
        assert_eq!(roc_auc_ovr(&proba, &[0, 1]), Some(1.0));
        close(
            log_loss(&proba, &[0, 1]),
            -(0.9f64.ln() + 0.8f64.ln()) / 2.0,
            1e-15,
        );
        let scores = ClassificationScores::new(&proba, &[0, 1]);
        assert_eq!(scores.accuracy, 1.0);
        assert_eq!(scores.roc_auc, Some(1.0));
        assert_eq!(
            RegressionScores::new(&[1.0, 2.0, 3.0], &[1.0, 2.0]).mse,
            0.0
        );
    }

    #[test]
    fn classification_hand_checked() {
        let predicted = [0, 1, 1, 0];
        let truth = [0, 1, 0, 0];
        assert_eq!(accuracy(&predicted, &truth), 0.75);
        // class 0: tp 2, fn 1 -> F1 0.8; class 1: tp 1, fp 1 -> F1 2/3
        close(
            macro_f1(&predicted, &truth, 2),
            (0.8 + 2.0 / 3.0) / 2.0,
            1e-15,
        );
        // recalls 2/3 and 1
        close(
            balanced_accuracy(&predicted, &truth, 2),
            (2.0 / 3.0 + 1.0) / 2.0,
            1e-15,
        );
        assert!(accuracy(&[], &[]).is_nan());
        assert!(balanced_accuracy(&[], &[], 3).is_nan());
    }

    #[test]
    fn macro_f1_skips_classes_in_neither_slice() {
        // class 1 appears nowhere and is skipped, class 2 only in the prediction (F1 0)
        let f1 = macro_f1(&[0, 0, 2], &[0, 0, 0], 4);
        close(f1, (0.8 + 0.0) / 2.0, 1e-15);
        // labels >= classes are not classes but still errors of class 0
        close(macro_f1(&[0, 5], &[0, 0], 2), 2.0 / 3.0, 1e-15);
        // old behaviour: 0 when no class appears
        assert_eq!(macro_f1(&[], &[], 3), 0.0);
        assert_eq!(macro_f1(&[7], &[7], 3), 0.0);
    }

    #[test]
    fn balanced_accuracy_ignores_classes_absent_from_truth() {
        // class 2 is only predicted; recalls: class 0 1/2, class 1 1/1
        assert_eq!(balanced_accuracy(&[0, 2, 1], &[0, 0, 1], 3), 0.75);
        // a label >= classes is no class; the row still misses class 0
        assert_eq!(balanced_accuracy(&[0, 0, 1], &[0, 9, 0], 2), 0.5);
    }

    #[test]
    fn roc_auc_hand_checked() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1]), Some(1.0));
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[1, 1, 0, 0]), Some(0.0));
        // 3 of the 4 positive/negative pairs are ordered right
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]), Some(0.75));
    }

    #[test]
    fn roc_auc_ties_count_one_half() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[0, 1]), Some(0.5));
        assert_eq!(roc_auc(&[0.3; 5], &[0, 1, 1, 0, 1]), Some(0.5));
        // pairs (pos, neg): (0.5, 0.2) 1, (0.5, 0.5) 1/2, (0.9, 0.2) 1, (0.9, 0.5) 1 -> 3.5 / 4
        assert_eq!(roc_auc(&[0.2, 0.5, 0.5, 0.9], &[0, 0, 1, 1]), Some(0.875));
        // -0.0 and 0.0 tie
        assert_eq!(roc_auc(&[-0.0, 0.0], &[1, 0]), Some(0.5));
        assert_eq!(roc_auc(&[0.0, -0.0], &[1, 0]), Some(0.5));
    }

    #[test]
    fn roc_auc_with_one_class_is_none() {
        assert_eq!(roc_auc(&[0.1, 0.9, 0.5], &[1, 1, 1]), None);
        assert_eq!(roc_auc(&[0.1, 0.9], &[0, 0]), None);
        assert_eq!(roc_auc(&[], &[]), None);
        let proba = vec![vec![0.2, 0.3, 0.5], vec![0.6, 0.3, 0.1]];
        assert_eq!(roc_auc_ovr(&proba, &[2, 2]), None);
        assert_eq!(roc_auc_ovr(&[], &[]), None);
        let scores = ClassificationScores::new(&proba, &[2, 2]);
        assert_eq!(scores.roc_auc, None);
        assert!(!scores.pairs().iter().any(|&(name, _)| name == "roc_auc"));
    }

    #[test]
    fn roc_auc_never_panics_on_nan() {
        let nan = f64::from_bits(0x7ff8_0000_0000_0000);
        // a positive NaN ranks above every number, a negative one below
        assert_eq!(roc_auc(&[nan, 0.5, 0.2], &[1, 0, 0]), Some(1.0));
        assert_eq!(roc_auc(&[-nan, 0.5, 0.2], &[1, 0, 0]), Some(0.0));
        // identical NaNs tie
        assert_eq!(roc_auc(&[nan, nan], &[1, 0]), Some(0.5));
        let proba = vec![vec![nan, 0.5], vec![0.5, nan], vec![nan, nan]];
        assert!(roc_auc_ovr(&proba, &[0, 1, 0]).is_some());
    }

    #[test]
    fn roc_auc_other_labels_are_negative() {
        assert_eq!(roc_auc(&[0.1, 0.9, 0.2], &[2, 1, 0]), Some(1.0));
    }

    #[test]
    fn roc_auc_ovr_hand_checked() {
        let proba = vec![
            vec![0.7, 0.2, 0.1],
            vec![0.1, 0.8, 0.1],
            vec![0.4, 0.4, 0.2],
            vec![0.1, 0.3, 0.6],
        ];
        let truth = [0, 1, 1, 2];
        // class 0: positive 0.7 over negatives 0.1, 0.4, 0.1 -> 1
        // class 1: positives 0.8, 0.4 over negatives 0.2, 0.3 -> 1
        // class 2: positive 0.6 over negatives 0.1, 0.1, 0.2 -> 1
        assert_eq!(roc_auc_ovr(&proba, &truth), Some(1.0));
        // swap the truth of rows 0 and 3: class 0 scores 0.1 against 0.7, 0.1, 0.4 -> 0.5/3,
        // class 2 scores 0.1 against 0.1, 0.2, 0.6 -> 0.5/3, class 1 still 1
        let auc = roc_auc_ovr(&proba, &[2, 1, 1, 0]).unwrap();
        close(auc, (0.5 / 3.0 + 1.0 + 0.5 / 3.0) / 3.0, 1e-15);
        // a class beyond the end of a row scores 0 there
        let ragged = vec![vec![0.9], vec![0.1, 0.9]];
        assert_eq!(roc_auc_ovr(&ragged, &[0, 1]), Some(1.0));
    }

    #[test]
    fn log_loss_hand_checked() {
        let proba = vec![vec![0.25, 0.75], vec![0.5, 0.5], vec![0.1, 0.2, 0.7]];
        let expected = -(0.75f64.ln() + 0.5f64.ln() + 0.7f64.ln()) / 3.0;
        close(log_loss(&proba, &[1, 0, 2]), expected, 1e-15);
        assert!(log_loss(&[], &[]).is_nan());
    }

    #[test]
    fn log_loss_clips_probabilities() {
        let eps = 1e-15f64;
        // zero (and missing) probabilities of the true class are clipped up to 1e-15
        close(log_loss(&[vec![1.0, 0.0]], &[1]), -eps.ln(), 1e-12);
        close(log_loss(&[vec![1.0]], &[1]), -eps.ln(), 1e-12);
        close(log_loss(&[vec![1e-300, 1.0]], &[0]), -eps.ln(), 1e-12);
        // a certain, correct prediction is clipped down to 1 - 1e-15, not a loss of exactly 0
        let certain = log_loss(&[vec![0.0, 1.0]], &[1]);
        assert!(certain > 0.0);
        close(certain, -(1.0 - eps).ln(), 1e-30);
        close(certain, 1e-15, 1e-17);
        // inside the bounds nothing is clipped
        assert_eq!(log_loss(&[vec![0.5, 0.5]], &[0]), -(0.5f64.ln()));
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[0.5, 0.5]), 0);
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[f64::NAN, 0.1, 0.3]), 2);
        assert_eq!(argmax(&[]), 0);
        let scores = ClassificationScores::new(&[vec![0.5, 0.5], vec![0.5, 0.5]], &[0, 1]);
        assert_eq!(scores.accuracy, 0.5);
        assert_eq!(scores.roc_auc, Some(0.5));
    }

    #[test]
    fn classification_scores_hand_checked() {
        let proba = vec![vec![0.9, 0.1], vec![0.4, 0.6], vec![0.6, 0.4]];
        let scores = ClassificationScores::new(&proba, &[0, 1, 1]);
        // predicted 0, 1, 0
        close(scores.accuracy, 2.0 / 3.0, 1e-15);
        close(scores.macro_f1, (2.0 / 3.0 + 2.0 / 3.0) / 2.0, 1e-15);
        assert_eq!(scores.balanced_accuracy, 0.75);
        // class 1 scores 0.6 and 0.4 against the negative's 0.1
        assert_eq!(scores.roc_auc, Some(1.0));
        close(
            scores.log_loss,
            -(0.9f64.ln() + 0.6f64.ln() + 0.4f64.ln()) / 3.0,
            1e-15,
        );
        // a true label beyond the columns is a class of its own for F1 and balanced accuracy
        let scores = ClassificationScores::new(&proba, &[0, 1, 2]);
        assert_eq!(scores.balanced_accuracy, 2.0 / 3.0);
        close(scores.macro_f1, (2.0 / 3.0 + 1.0 + 0.0) / 3.0, 1e-15);
    }

    #[test]
    fn empty_classification_scores() {
        let scores = ClassificationScores::new(&[], &[]);
        assert!(scores.accuracy.is_nan());
        assert_eq!(scores.macro_f1, 0.0);
        assert!(scores.balanced_accuracy.is_nan());
        assert_eq!(scores.roc_auc, None);
        assert!(scores.log_loss.is_nan());
    }

    #[test]
    fn pairs_have_fixed_names_and_order() {
        // mean 2.5, SS_tot 4.5, SS_res 4
        let regression = RegressionScores::new(&[1.0, 2.0], &[1.0, 4.0]);
        assert_eq!(
            regression.pairs(),
            vec![("mse", 2.0), ("mae", 1.0), ("r2", 1.0 - 4.0 / 4.5)]
        );
        let scores = ClassificationScores {
            accuracy: 0.1,
            macro_f1: 0.2,
            balanced_accuracy: 0.3,
            roc_auc: Some(0.4),
            log_loss: 0.5,
        };
        assert_eq!(
            scores.pairs(),
            vec![
                ("accuracy", 0.1),
                ("macro_f1", 0.2),
                ("balanced_accuracy", 0.3),
                ("roc_auc", 0.4),
                ("log_loss", 0.5),
            ]
        );
        let without_auc = ClassificationScores {
            roc_auc: None,
            ..scores
        };
        assert_eq!(
            without_auc.pairs(),
            vec![
                ("accuracy", 0.1),
                ("macro_f1", 0.2),
                ("balanced_accuracy", 0.3),
                ("log_loss", 0.5),
            ]
        );
    }

    // ---- reference values from scikit-learn 1.9.1 ----
    //
    // Seeded NumPy cases (default_rng(20240611)); the probabilities are integer weights
    // normalised per row (`w / w.sum()`, the same divisions in Rust and NumPy), which puts many
    // ties into the scores. Probabilities stay inside [0.05, 0.95] so that scikit-learn's
    // clipping bound (machine epsilon since 1.5) and ours (1e-15) do not matter.

    const SKLEARN_TOL: f64 = 1e-12;

    /// Checks every classification score, individually and through `ClassificationScores`.
    fn check_classification(
        proba: &[Vec<f64>],
        truth: &[usize],
        classes: usize,
        expected: [f64; 5],
    ) {
        let [acc, f1, bal, auc, loss] = expected;
        let predicted: Vec<usize> = proba.iter().map(|row| argmax(row)).collect();
        close(accuracy(&predicted, truth), acc, SKLEARN_TOL);
        close(macro_f1(&predicted, truth, classes), f1, SKLEARN_TOL);
        close(
            balanced_accuracy(&predicted, truth, classes),
            bal,
            SKLEARN_TOL,
        );
        let direct = if classes == 2 {
            let scores: Vec<f64> = proba.iter().map(|row| row[1]).collect();
            roc_auc(&scores, truth)
        } else {
            roc_auc_ovr(proba, truth)
        };
        close(direct.unwrap(), auc, SKLEARN_TOL);
        close(log_loss(proba, truth), loss, SKLEARN_TOL);

        let scores = ClassificationScores::new(proba, truth);
        close(scores.accuracy, acc, SKLEARN_TOL);
        close(scores.macro_f1, f1, SKLEARN_TOL);
        close(scores.balanced_accuracy, bal, SKLEARN_TOL);
        close(scores.roc_auc.unwrap(), auc, SKLEARN_TOL);
        close(scores.log_loss, loss, SKLEARN_TOL);
    }

    #[test]
    fn sklearn_regression() {
        // mean_squared_error, mean_absolute_error, r2_score
        let targets = [
            1.683, 1.223, 2.224, -0.685, 2.427, 1.517, 0.911, 2.148, -0.927, 1.762, 0.903, 2.615,
            2.664, 0.608, 0.6, -0.205, 0.818, 2.479, 3.286, 2.343, 2.052, 0.699, 2.294, 0.776,
            2.359, 1.696, 3.284, 2.304, 4.053, 1.388,
        ];
        let predictions = [
            2.288, 1.403, 3.581, -2.255, 3.126, 0.698, 0.216, 2.133, -2.135, 0.806, 0.499, 2.357,
            1.141, -0.091, 0.483, -0.311, 0.288, 2.476, 2.875, 3.282, 1.405, 0.746, 1.902, 1.46,
            1.582, 2.397, 2.328, 1.21, 3.614, 1.462,
        ];
        close(mse(&predictions, &targets), 0.5853803000000001, SKLEARN_TOL);
        close(mae(&predictions, &targets), 0.6301666666666667, SKLEARN_TOL);
        close(r2(&predictions, &targets), 0.542741376137472, SKLEARN_TOL);
        let scores = RegressionScores::new(&predictions, &targets);
        close(scores.mse, 0.5853803000000001, SKLEARN_TOL);
        close(scores.mae, 0.6301666666666667, SKLEARN_TOL);
        close(scores.r2, 0.542741376137472, SKLEARN_TOL);
    }

    #[test]
    fn sklearn_binary() {
        // accuracy_score, f1_score(average="macro"), balanced_accuracy_score,
        // roc_auc_score(truth, proba[:, 1]), log_loss; score of class 1 = k / 20
        #[rustfmt::skip]
        let proba = normalise(&[
            [2, 18], [18, 2], [10, 10], [5, 15], [18, 2], [10, 10], [9, 11], [12, 8],
            [14, 6], [6, 14], [6, 14], [9, 11], [8, 12], [4, 16], [5, 15], [4, 16],
            [15, 5], [14, 6], [8, 12], [6, 14], [1, 19], [15, 5], [18, 2], [10, 10],
            [1, 19], [13, 7], [6, 14], [11, 9], [7, 13], [5, 15], [17, 3], [11, 9],
            [11, 9], [1, 19], [10, 10], [16, 4], [6, 14], [13, 7], [2, 18], [18, 2],
            [6, 14], [19, 1], [15, 5], [9, 11], [5, 15], [9, 11], [5, 15], [11, 9],
            [14, 6], [14, 6],
        ]);
        let truth = [
            1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0,
            1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1,
        ];
        check_classification(
            &proba,
            &truth,
            2,
            [
                0.7,
                0.696969696969697,
                0.7083333333333333,
                0.8008333333333335,
                0.5410977098080346,
            ],
        );
    }

    #[test]
    fn sklearn_four_classes() {
        // as above, with roc_auc_score(multi_class="ovr", average="macro", labels=[0, 1, 2, 3])
        // and log_loss(labels=[0, 1, 2, 3])
        #[rustfmt::skip]
        let proba = normalise(&[
            [7, 9, 1, 7], [5, 1, 3, 2], [6, 2, 12, 1], [3, 4, 6, 1], [2, 4, 3, 5],
            [1, 7, 7, 6], [7, 7, 3, 8], [6, 4, 6, 3], [10, 3, 7, 2], [2, 8, 4, 6],
            [4, 2, 6, 6], [6, 8, 9, 1], [1, 1, 9, 8], [6, 9, 2, 9], [6, 2, 6, 2],
            [3, 8, 8, 12], [4, 1, 7, 9], [2, 3, 8, 6], [2, 6, 5, 5], [3, 2, 6, 8],
            [11, 6, 3, 9], [1, 9, 8, 3], [2, 5, 9, 6], [7, 3, 3, 5], [6, 1, 14, 5],
            [1, 8, 7, 4], [8, 5, 4, 4], [2, 9, 2, 1], [5, 1, 6, 8], [10, 5, 3, 7],
            [8, 12, 9, 3], [6, 7, 6, 6], [1, 4, 6, 5], [4, 9, 6, 8], [9, 5, 6, 8],
            [7, 6, 2, 6], [1, 3, 6, 6], [7, 7, 9, 4], [4, 7, 6, 4], [7, 8, 2, 11],
            [4, 1, 9, 7], [8, 6, 6, 1], [4, 5, 7, 9], [8, 1, 3, 2], [7, 6, 1, 4],
            [2, 1, 7, 1], [8, 7, 5, 7], [9, 1, 6, 9], [6, 6, 6, 8], [1, 9, 2, 11],
        ]);
        let truth = [
            0, 1, 2, 0, 3, 2, 2, 1, 0, 3, 3, 2, 2, 3, 2, 3, 3, 2, 1, 3, 0, 1, 2, 3, 2, 1, 3, 1, 2,
            0, 1, 0, 2, 1, 3, 3, 2, 0, 1, 3, 1, 0, 1, 1, 3, 2, 1, 2, 1, 3,
        ];
        check_classification(
            &proba,
            &truth,
            4,
            [
                0.52,
                0.5132385730211817,
                0.5178571428571428,
                0.7566964285714285,
                1.1864269550458422,
            ],
        );
    }

    #[test]
    fn sklearn_class_absent_from_truth() {
        // four columns, class 3 never true but sometimes predicted. scikit-learn: f1_score and
        // balanced_accuracy_score with default labels; the AUC is the mean of
        // roc_auc_score(truth == c, proba[:, c]) over c in {0, 1, 2} (scikit-learn's "ovr"
        // gives NaN here); log_loss(labels=[0, 1, 2, 3])
        #[rustfmt::skip]
        let proba = normalise(&[
            [9, 8, 6, 3], [5, 5, 12, 8], [6, 3, 8, 6], [5, 9, 3, 6], [10, 1, 6, 3],
            [5, 3, 3, 8], [10, 3, 8, 3], [4, 5, 6, 6], [4, 11, 2, 4], [6, 7, 2, 5],
            [2, 13, 2, 1], [5, 7, 7, 1], [5, 4, 4, 7], [7, 9, 6, 5], [1, 7, 9, 7],
            [9, 3, 9, 3], [9, 9, 2, 3], [6, 3, 9, 2], [3, 6, 2, 9], [8, 10, 6, 8],
            [8, 9, 2, 6], [10, 6, 7, 7], [3, 8, 4, 7], [6, 7, 7, 7], [5, 7, 8, 8],
            [1, 8, 8, 3], [9, 3, 5, 8], [7, 6, 5, 1], [4, 8, 4, 5], [4, 7, 9, 4],
            [6, 1, 4, 1], [2, 5, 6, 3], [7, 6, 4, 3], [9, 9, 2, 9], [6, 2, 4, 3],
            [9, 1, 8, 4], [3, 8, 6, 8], [8, 4, 6, 4], [11, 4, 5, 2], [7, 5, 2, 1],
        ]);
        let truth = [
            0, 2, 0, 0, 0, 0, 0, 2, 1, 1, 1, 0, 0, 1, 1, 2, 0, 1, 0, 1, 2, 0, 1, 1, 1, 1, 1, 0, 0,
            1, 2, 1, 0, 1, 0, 1, 2, 2, 0, 1,
        ];
        check_classification(
            &proba,
            &truth,
            4,
            [
                0.475,
                0.34062499999999996,
                0.43960084033613445,
                0.660892440803726,
                1.2577451499449261,
            ],
        );
    }
}
