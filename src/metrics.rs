//! Evaluation metrics on plain slices.

/// Mean squared error between predictions and targets (NaN for empty input).
///
/// ```
/// assert_eq!(metaadd::metrics::mse(&[1.0, 2.0], &[1.0, 4.0]), 2.0);
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

/// Fraction of labels predicted correctly.
///
/// ```
/// assert_eq!(metaadd::metrics::accuracy(&[0, 1, 1, 0], &[0, 1, 0, 0]), 0.75);
/// ```
pub fn accuracy(predicted: &[usize], truth: &[usize]) -> f64 {
    let n = predicted.len().min(truth.len());
    predicted.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / n as f64
}

/// Macro-averaged F1 over the classes `0..classes`; a class that appears in neither slice is
/// skipped.
///
/// ```
/// let f1 = metaadd::metrics::macro_f1(&[0, 1, 1, 0], &[0, 1, 0, 0], 2);
/// assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
/// ```
pub fn macro_f1(predicted: &[usize], truth: &[usize], classes: usize) -> f64 {
    let mut scores = Vec::with_capacity(classes);
    for c in 0..classes {
        let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
        for (&p, &t) in predicted.iter().zip(truth) {
            match (p == c, t == c) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => {}
            }
        }
        if tp + fp + fn_ > 0 {
            scores.push(2.0 * tp as f64 / (2 * tp + fp + fn_) as f64);
        }
    }
    scores.iter().sum::<f64>() / scores.len().max(1) as f64
}
