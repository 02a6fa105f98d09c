//! The λ path: group-lasso strengths from `λ_max` (every group zero) down, each fit warm-started
//! from the previous one, and the λ whose fit has the smallest meta loss.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::MetaAdditiveModel;
use crate::ops::scalar;
use crate::trainer::{FitParams, Trainer};

/// How many λ values, how far down, and how many outer iterations at each.
///
/// ```
/// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
/// use metaadd::path::PathParams;
/// use metaadd::{FitParams, Task};
/// let splits = RegressionProtocol::new(RegressionNoise::B).n(150).n_features(10).generate(0)?;
/// let fit = FitParams::new(Task::Regression).iterations(40);
/// let path = PathParams::new(fit).lambdas(6).fit(&splits.train, &splits.meta)?;
/// assert_eq!(path.lambdas.len(), 6);
/// // The first λ is λ_max: every group is zero there.
/// assert!(path.group_norms[0].iter().all(|&g| g == 0.0));
/// let best = path.best;
/// assert_eq!(path.model.params().lambda, path.lambdas[best]);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PathParams {
    /// Settings of every fit; `iterations` is per λ, `lambda` is ignored.
    pub fit: FitParams,
    /// Number of λ values.
    pub lambdas: usize,
    /// The smallest λ as a fraction of `λ_max`.
    pub min_ratio: f64,
}

impl PathParams {
    /// 20 values, geometric from `λ_max` down to `10⁻³·λ_max`.
    pub fn new(fit: FitParams) -> Self {
        Self {
            fit,
            lambdas: 20,
            min_ratio: 1e-3,
        }
    }

    /// Sets the number of λ values.
    pub fn lambdas(mut self, n: usize) -> Self {
        self.lambdas = n;
        self
    }

    /// Sets the smallest λ as a fraction of `λ_max`.
    pub fn min_ratio(mut self, ratio: f64) -> Self {
        self.min_ratio = ratio;
        self
    }

    /// Fits the path on `train`, scoring each λ by the meta loss on `meta`.
    pub fn fit(&self, train: &Dataset, meta: &Dataset) -> Result<LambdaPath> {
        if self.lambdas < 2 {
            return Err(Error::param("lambdas", "a path needs at least 2 values"));
        }
        if !(self.min_ratio > 0.0 && self.min_ratio < 1.0) {
            return Err(Error::param(
                "min_ratio",
                format!("must lie in (0, 1), got {}", self.min_ratio),
            ));
        }
        let mut trainer = Trainer::new(&self.fit, train, meta)?;
        let problem = trainer.bilevel();
        let lambda_max = trainer.inner_step().lambda_max(&problem.train)?;
        let lambdas: Vec<f64> = (0..self.lambdas)
            .map(|i| {
                let t = i as f64 / (self.lambdas - 1) as f64;
                lambda_max * self.min_ratio.powf(t)
            })
            .collect();
        let p = train.n_features();
        let (mut meta_losses, mut group_norms) = (Vec::new(), Vec::new());
        let mut best: Option<(usize, f64, MetaAdditiveModel)> = None;
        for (i, &lambda) in lambdas.iter().enumerate() {
            trainer.set_lambda(lambda)?;
            for _ in 0..self.fit.iterations {
                trainer.step()?;
            }
            let loss = scalar(&problem.meta.mean_loss(trainer.coefficients())?)?;
            meta_losses.push(loss);
            group_norms.push(trainer.coefficients().group_norms(p)?);
            if best.as_ref().is_none_or(|(_, b, _)| loss < *b) {
                best = Some((i, loss, trainer.model()?));
            }
        }
        let (best, _, model) = best.ok_or_else(|| Error::invalid("empty λ path"))?;
        Ok(LambdaPath {
            lambdas,
            meta_losses,
            group_norms,
            best,
            model,
        })
    }
}

/// A fitted λ path.
#[derive(Debug, Clone)]
pub struct LambdaPath {
    /// λ values, from `λ_max` down.
    pub lambdas: Vec<f64>,
    /// Meta loss at the end of each λ's fit.
    pub meta_losses: Vec<f64>,
    /// `‖β_j‖` of every feature at the end of each λ's fit.
    pub group_norms: Vec<Vec<f64>>,
    /// Index of the λ with the smallest meta loss.
    pub best: usize,
    /// The model fitted at that λ.
    pub model: MetaAdditiveModel,
}
