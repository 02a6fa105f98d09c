//! How the target values of a data file map to the model's targets: class labels (which
//! original value is class 0, 1, …) and the standardisation of a regression target.

use crate::error::{Error, Result};

/// The original label values in class-index order.
///
/// A binary target may use any two distinct values (sorted: the smaller is class 0); a
/// multi-class target must use the integers `0..C` with every class present.
///
/// ```
/// use metaadd::data::targets::ClassLabels;
/// let labels = ClassLabels::binary(&[-1.0, 1.0, 1.0, -1.0])?;
/// assert_eq!(labels.values(), &[-1.0, 1.0]);
/// assert_eq!(labels.encode(&[1.0, -1.0])?, vec![1.0, 0.0]);
/// assert!(ClassLabels::multiclass(&[0.0, 2.0]).is_err()); // class 1 is missing
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ClassLabels {
    values: Vec<f64>,
}

impl ClassLabels {
    /// Labels of a binary target: exactly two distinct values.
    pub fn binary(y: &[f64]) -> Result<Self> {
        let mut values: Vec<f64> = Vec::new();
        for (i, &v) in y.iter().enumerate() {
            if !values.contains(&v) {
                if values.len() == 2 {
                    return Err(Error::Label {
                        row: Some(i),
                        reason: format!(
                            "third distinct label {v} (after {} and {}): a binary target has two",
                            values[0], values[1]
                        ),
                    });
                }
                values.push(v);
            }
        }
        if values.len() < 2 {
            return Err(Error::Label {
                row: None,
                reason: format!(
                    "a binary target needs two distinct labels, found only {}",
                    values.first().map_or("none".to_string(), f64::to_string)
                ),
            });
        }
        values.sort_by(f64::total_cmp);
        Ok(Self { values })
    }

    /// Labels of a multi-class target: integers `0..C`, each present.
    pub fn multiclass(y: &[f64]) -> Result<Self> {
        let mut seen: Vec<bool> = Vec::new();
        for (i, &v) in y.iter().enumerate() {
            if !(v.fract() == 0.0 && (0.0..1e6).contains(&v)) {
                return Err(Error::Label {
                    row: Some(i),
                    reason: format!("label {v} is not a class index (integers 0..C−1)"),
                });
            }
            let c = v as usize;
            if c >= seen.len() {
                seen.resize(c + 1, false);
            }
            seen[c] = true;
        }
        if let Some(missing) = seen.iter().position(|&s| !s) {
            return Err(Error::Label {
                row: None,
                reason: format!(
                    "labels must be the integers 0..{} with each class present; class {missing} \
                     never appears",
                    seen.len() - 1
                ),
            });
        }
        if seen.len() < 2 {
            return Err(Error::Label {
                row: None,
                reason: "a multi-class target needs at least two classes".to_string(),
            });
        }
        Ok(Self {
            values: (0..seen.len()).map(|c| c as f64).collect(),
        })
    }

    /// Rebuilds from stored values (distinct, in class order).
    pub fn from_values(values: Vec<f64>) -> Result<Self> {
        for (i, v) in values.iter().enumerate() {
            if !v.is_finite() || values[..i].contains(v) {
                return Err(Error::invalid(format!(
                    "class labels must be distinct finite values, got {values:?}"
                )));
            }
        }
        Ok(Self { values })
    }

    /// The original values, class 0 first.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always false: there are at least two classes.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Class indices (as `f64`) for original label values.
    pub fn encode(&self, y: &[f64]) -> Result<Vec<f64>> {
        y.iter()
            .enumerate()
            .map(|(i, v)| {
                self.values
                    .iter()
                    .position(|l| l == v)
                    .map(|c| c as f64)
                    .ok_or_else(|| Error::Label {
                        row: Some(i),
                        reason: format!("label {v} is not one of {:?}", self.values),
                    })
            })
            .collect()
    }

    /// The original value of class `class`.
    pub fn decode(&self, class: usize) -> Option<f64> {
        self.values.get(class).copied()
    }
}

/// Standardisation of a regression target: the model is fitted to `(y − mean) / sd`, so that
/// the training losses fed to the weight net have the same scale whatever the target's units.
///
/// [`TargetScale::fit`] takes the numbers from the clean meta set, as the paper's protocols do:
/// the training targets may hold gross outliers that would inflate a standard deviation.
///
/// ```
/// use metaadd::data::targets::TargetScale;
/// let scale = TargetScale::fit(&[1.0, 3.0])?;
/// assert_eq!((scale.mean(), scale.sd()), (2.0, 1.0));
/// assert_eq!(scale.encode(&[4.0]), vec![2.0]);
/// assert_eq!(scale.decode(&[2.0]), vec![4.0]);
/// assert!(TargetScale::fit(&[5.0, 5.0]).is_err()); // constant target
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetScale {
    mean: f64,
    sd: f64,
}

impl TargetScale {
    /// Mean and standard deviation (divisor `n`) of `y`; a constant or non-finite target is
    /// an error.
    pub fn fit(y: &[f64]) -> Result<Self> {
        if y.is_empty() {
            return Err(Error::invalid("cannot standardise an empty target"));
        }
        let n = y.len() as f64;
        let mean = y.iter().sum::<f64>() / n;
        let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        Self::new(mean, sd)
    }

    /// A scale from stored numbers: `mean` finite, `sd` finite and positive.
    pub fn new(mean: f64, sd: f64) -> Result<Self> {
        if !(mean.is_finite() && sd.is_finite() && sd > 0.0) {
            return Err(Error::invalid(format!(
                "target standardisation needs a finite mean and a positive standard deviation, \
                 got mean {mean} and sd {sd} (is the target constant?)"
            )));
        }
        Ok(Self { mean, sd })
    }

    /// The mean subtracted.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The standard deviation divided by.
    pub fn sd(&self) -> f64 {
        self.sd
    }

    /// Standardised values `(y − mean) / sd`.
    pub fn encode(&self, y: &[f64]) -> Vec<f64> {
        y.iter().map(|v| (v - self.mean) / self.sd).collect()
    }

    /// Values in the target's units, `f · sd + mean`.
    pub fn decode(&self, f: &[f64]) -> Vec<f64> {
        f.iter().map(|v| v * self.sd + self.mean).collect()
    }
}
