//! Per-sample losses with their derivative in closed form (docs/design.md §4).
//!
//! Both the value `ℓ_i` and the derivative `∂ℓ_i/∂f_i` are written as candle tensor operations,
//! so the inner gradient `Φᵀ(w ⊙ ∂ℓ/∂f)` stays differentiable by first-order autodiff: the
//! exact hypergradient never needs second-order differentiation.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use std::fmt;
use std::str::FromStr;

/// What is predicted: a real target, one of two classes, or one of `classes` classes.
///
/// ```
/// use metaadd::Task;
/// assert_eq!(Task::Multiclass { classes: 10 }.outputs(), 10);
/// assert_eq!("binary".parse::<Task>()?, Task::Binary);
/// assert_eq!("multiclass(3)".parse::<Task>()?.to_string(), "multiclass(3)");
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Real-valued target, one output.
    Regression,
    /// Labels 0/1, one logit.
    Binary,
    /// Labels `0..classes`, one logit per class.
    Multiclass {
        /// Number of classes (at least 2).
        classes: usize,
    },
}

impl Task {
    /// Number of model outputs `C`.
    pub fn outputs(&self) -> usize {
        match self {
            Task::Regression | Task::Binary => 1,
            Task::Multiclass { classes } => *classes,
        }
    }

    /// The loss this task is trained with unless another is chosen.
    pub fn default_loss(&self) -> Loss {
        match self {
            Task::Regression => Loss::Squared,
            Task::Binary => Loss::Logistic,
            Task::Multiclass { .. } => Loss::Softmax,
        }
    }

    /// Whether `loss` is defined for this task's targets.
    pub fn accepts(&self, loss: Loss) -> bool {
        matches!(
            (self, loss),
            (Task::Regression, Loss::Squared | Loss::Huber { .. })
                | (Task::Binary, Loss::Logistic)
                | (Task::Multiclass { .. }, Loss::Softmax)
        )
    }

    /// Checks targets and encodes them as the tensor the losses take: `[n, 1]` values for
    /// regression and binary tasks, one-hot `[n, C]` rows for multi-class.
    ///
    /// A class label that is not an integer in range is an error naming its row.
    pub fn encode_targets(&self, y: &[f64], dtype: DType, device: &Device) -> Result<Tensor> {
        let n = y.len();
        let check_label = |i: usize, v: f64, classes: usize| -> Result<usize> {
            if v.fract() == 0.0 && v >= 0.0 && v < classes as f64 {
                Ok(v as usize)
            } else {
                Err(Error::invalid(format!(
                    "target at row {i} is {v}: a {self} task needs class labels 0..{}",
                    classes - 1
                )))
            }
        };
        let values = match self {
            Task::Regression => y.to_vec(),
            Task::Binary => {
                for (i, &v) in y.iter().enumerate() {
                    check_label(i, v, 2)?;
                }
                y.to_vec()
            }
            Task::Multiclass { classes } => {
                let mut one_hot = vec![0.0; n * classes];
                for (i, &v) in y.iter().enumerate() {
                    one_hot[i * classes + check_label(i, v, *classes)?] = 1.0;
                }
                one_hot
            }
        };
        Ok(Tensor::from_vec(values, (n, self.outputs()), device)?.to_dtype(dtype)?)
    }

    /// Validates the task's own parameters.
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Task::Multiclass { classes } if *classes < 2 => Err(Error::param(
                "task",
                format!("multiclass needs at least 2 classes, got {classes}"),
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Regression => write!(f, "regression"),
            Task::Binary => write!(f, "binary"),
            Task::Multiclass { classes } => write!(f, "multiclass({classes})"),
        }
    }
}

impl FromStr for Task {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        match t {
            "regression" => return Ok(Task::Regression),
            "binary" => return Ok(Task::Binary),
            _ => {}
        }
        t.strip_prefix("multiclass(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|c| c.parse().ok())
            .map(|classes| Task::Multiclass { classes })
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown task `{s}`: expected regression, binary or multiclass(C)"
                ))
            })
    }
}

/// A per-sample loss `ℓ(y, f)` of the model output `f` (one row of `[n, C]`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use metaadd::Loss;
/// let f = Tensor::new(&[[1.0f64], [3.0]], &Device::Cpu)?;
/// let y = Tensor::new(&[[0.0f64], [1.0]], &Device::Cpu)?;
/// assert_eq!(Loss::Squared.value(&f, &y)?.to_vec1::<f64>()?, vec![0.5, 2.0]);
/// assert_eq!(Loss::Squared.derivative(&f, &y)?.flatten_all()?.to_vec1::<f64>()?, vec![1.0, 2.0]);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// `½ (f − y)²`.
    Squared,
    /// Huber's loss with threshold `delta`: quadratic within `delta`, linear beyond.
    Huber {
        /// Where the loss turns linear (> 0).
        delta: f64,
    },
    /// Binary cross-entropy on one logit, labels 0/1: `log(1 + eᶠ) − y f`.
    Logistic,
    /// Softmax cross-entropy on `C` logits, one-hot labels: `logsumexp(f) − Σ_c y_c f_c`.
    Softmax,
}

impl Loss {
    /// Per-sample losses `ℓ_i`, shape `[n]`, for outputs `f` `[n, C]` and encoded targets `y`
    /// (see [`Task::encode_targets`]).
    pub fn value(&self, f: &Tensor, y: &Tensor) -> Result<Tensor> {
        let v = match self {
            Loss::Squared => (f - y)?.sqr()?.affine(0.5, 0.0)?,
            Loss::Huber { delta } => {
                let r = (f - y)?;
                let c = r.clamp(-delta, *delta)?;
                // c·r − c²/2 is ½r² inside and δ|r| − δ²/2 outside, with derivative c.
                ((&c * &r)? - c.sqr()?.affine(0.5, 0.0)?)?
            }
            Loss::Logistic => (softplus(f)? - (y * f)?)?,
            Loss::Softmax => {
                let lse = logsumexp_rows(f)?;
                return Ok((lse - (y * f)?.sum(D::Minus1)?)?);
            }
        };
        Ok(v.squeeze(D::Minus1)?)
    }

    /// `∂ℓ_i/∂f_i`, shape `[n, C]`, in closed form.
    pub fn derivative(&self, f: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Loss::Squared => (f - y)?,
            Loss::Huber { delta } => (f - y)?.clamp(-delta, *delta)?,
            // σ(f) = exp(f − softplus(f)): stable for any f and built from differentiable ops.
            Loss::Logistic => ((f - softplus(f)?)?.exp()? - y)?,
            Loss::Softmax => {
                let lse = logsumexp_rows(f)?.unsqueeze(1)?;
                (f.broadcast_sub(&lse)?.exp()? - y)?
            }
        })
    }

    /// Curvature bound: `∂²ℓ/∂f² ≤ curvature()`, used to pick a safe inner step size.
    pub fn curvature(&self) -> f64 {
        match self {
            Loss::Squared | Loss::Huber { .. } => 1.0,
            Loss::Logistic => 0.25,
            Loss::Softmax => 0.5,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Loss::Huber { delta } if !(delta.is_finite() && *delta > 0.0) => Err(Error::param(
                "loss",
                format!("huber delta must be positive, got {delta}"),
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::Squared => write!(f, "squared"),
            Loss::Huber { delta } => write!(f, "huber({delta})"),
            Loss::Logistic => write!(f, "logistic"),
            Loss::Softmax => write!(f, "softmax"),
        }
    }
}

impl FromStr for Loss {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let loss = match t {
            "squared" => Loss::Squared,
            "logistic" => Loss::Logistic,
            "softmax" => Loss::Softmax,
            "huber" => Loss::Huber { delta: 1.345 },
            _ => t
                .strip_prefix("huber(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|d| d.parse().ok())
                .map(|delta| Loss::Huber { delta })
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "unknown loss `{s}`: expected squared, huber(δ), logistic or softmax"
                    ))
                })?,
        };
        loss.validate()?;
        Ok(loss)
    }
}

/// `log(1 + eᶠ)` elementwise, computed as `m + log(e^{−m} + e^{f−m})` with `m = max(f, 0)`
/// held constant: stable for any `f`, and its autodiff derivative is exactly `σ(f)` with no kink.
fn softplus(f: &Tensor) -> Result<Tensor> {
    let m = f.detach().relu()?;
    let s = (m.neg()?.exp()? + (f - &m)?.exp()?)?.log()?;
    Ok((s + m)?)
}

/// Row-wise `log Σ_c e^{f_c}` `[n]`, shifted by the detached row maximum (exact gradient: the
/// shift cancels).
fn logsumexp_rows(f: &Tensor) -> Result<Tensor> {
    let m = f.detach().max_keepdim(D::Minus1)?;
    let s = f.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok((s + m)?.squeeze(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn outputs_and_targets(task: Task) -> (Tensor, Tensor) {
        let dev = Device::Cpu;
        let c = task.outputs();
        // Includes f = 0 exactly and large |f|, where naive formulas lose precision or kink.
        let f: Vec<f64> = (0..6 * c)
            .map(|i| [0.0, 1.3, -2.1, 40.0, -35.0, 0.4][i % 6] + 0.1 * (i / 6) as f64)
            .collect();
        let y: Vec<f64> = match task {
            Task::Regression => vec![0.5, -1.0, 3.0, 38.0, -30.0, 0.0],
            Task::Binary => vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
            Task::Multiclass { .. } => vec![0.0, 1.0, 2.0, 1.0, 0.0, 2.0],
        };
        let f = Tensor::from_vec(f, (6, c), &dev).unwrap();
        (f, task.encode_targets(&y, DType::F64, &dev).unwrap())
    }

    #[test]
    fn closed_form_derivatives_match_autodiff_and_finite_differences() {
        let cases = [
            (Task::Regression, Loss::Squared),
            (Task::Regression, Loss::Huber { delta: 1.5 }),
            (Task::Binary, Loss::Logistic),
            (Task::Multiclass { classes: 3 }, Loss::Softmax),
        ];
        for (task, loss) in cases {
            let (f, y) = outputs_and_targets(task);
            let var = Var::from_tensor(&f).unwrap();
            let total = loss.value(var.as_tensor(), &y).unwrap().sum_all().unwrap();
            let grads = total.backward().unwrap();
            let auto = grads.get(var.as_tensor()).expect("gradient reaches f");
            let closed = loss.derivative(&f, &y).unwrap();
            let diff = (auto - &closed).unwrap().abs().unwrap().max_all().unwrap();
            assert!(
                diff.to_scalar::<f64>().unwrap() < 1e-12,
                "{loss}: autodiff differs"
            );

            let flat = f.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let closed = closed.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let eps = 1e-6;
            for i in 0..flat.len() {
                let at = |delta: f64| {
                    let mut v = flat.clone();
                    v[i] += delta;
                    let t = Tensor::from_vec(v, f.shape(), f.device()).unwrap();
                    loss.value(&t, &y)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap()
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (fd - closed[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{loss} entry {i}: finite difference {fd}, closed form {}",
                    closed[i]
                );
            }
        }
    }

    #[test]
    fn values_are_stable_for_large_logits() {
        let dev = Device::Cpu;
        let f = Tensor::new(&[[800.0f64], [-800.0], [0.0]], &dev).unwrap();
        let y = Tensor::new(&[[0.0f64], [0.0], [1.0]], &dev).unwrap();
        let v = Loss::Logistic
            .value(&f, &y)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(v[0], 800.0);
        assert!(v[1] >= 0.0 && v[1] < 1e-300);
        assert!((v[2] - std::f64::consts::LN_2).abs() < 1e-15);
        let f = Tensor::new(&[[1000.0f64, 0.0, -1000.0]], &dev).unwrap();
        let y = Tensor::new(&[[0.0f64, 1.0, 0.0]], &dev).unwrap();
        assert_eq!(
            Loss::Softmax
                .value(&f, &y)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            [1000.0]
        );
    }

    #[test]
    fn labels_are_checked_and_named() {
        let dev = Device::Cpu;
        let err = Task::Binary
            .encode_targets(&[0.0, 1.0, 2.0], DType::F32, &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 2") && err.contains("0..1"), "{err}");
        let err = Task::Multiclass { classes: 3 }
            .encode_targets(&[0.0, 1.5], DType::F32, &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1"), "{err}");
        let one_hot = Task::Multiclass { classes: 3 }
            .encode_targets(&[2.0, 0.0], DType::F64, &dev)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(one_hot, [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]);
    }

    #[test]
    fn names_round_trip() {
        for loss in [
            Loss::Squared,
            Loss::Huber { delta: 0.5 },
            Loss::Logistic,
            Loss::Softmax,
        ] {
            assert_eq!(loss.to_string().parse::<Loss>().unwrap(), loss);
        }
        assert!("huber(-1)".parse::<Loss>().is_err());
        assert!("hinge".parse::<Loss>().is_err());
    }
}
