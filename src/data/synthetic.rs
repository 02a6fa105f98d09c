//! The synthetic protocols of the paper: three train / meta / test designs with known truth.
//!
//! | protocol | features | signal | training corruption |
//! | --- | --- | --- | --- |
//! | [`RegressionProtocol`] | `U(−1, 1)^p`, independent | `Σ_{j≤8} f_j(x_j)` ([`paper_component`]) | [`RegressionNoise`] A, B, C or Gaussian |
//! | [`ClassificationProtocol`] | `(W_ij + U_i)/2`, correlated | `1{(x1−½)² + (x2−½)² > 0.08}` ([`circle_label`]) | [`ClassificationCorruption`]: imbalance, label flips |
//! | [`SpamProtocol`] | `(W_j + t·U)/(1 + t)`, correlated | `Σ_{j≤4} g_j(x_j)` ([`spam_component`]) | Gaussian noise of sd `σ` |
//!
//! Common rules:
//!
//! * **Reproducible.** Every generator takes a `seed` and draws from
//!   [`StdRng::seed_from_u64`]`(seed)`: the same seed gives the same [`Splits`], bit for bit (for
//!   a given version of `rand`). That master generator seeds one independent stream per part
//!   (training features, training corruption, meta set, test set), so the meta and test sets of
//!   a seed do not depend on the training size or on the kind of noise, and the training features
//!   of a seed are the same under every [`RegressionNoise`].
//! * **Noise on training targets only.** Meta and test targets are the clean signal: the meta
//!   set is the small trusted set that the meta-learner may rely on, and the test error measures
//!   recovery of the true function.
//! * **Standardised regression targets.** The two regression protocols subtract the meta set's
//!   mean target and divide by the meta set's standard deviation (divisor `n`), the same two
//!   numbers for all three splits (kept in [`Splits::target_mean`] and [`Splits::target_sd`]).
//!   This uses only the clean meta set, which the learner sees anyway, so nothing leaks from the
//!   test set; test errors are then "MSE on standardised targets".
//! * **Names.** Features are named `x1, …, xp` (1-based, as in the paper); the target is `y`.
//!
//! Normal draws use the Box–Muller transform and Student-t draws the inverse CDF, both written
//! here on top of `rand`'s uniform `f64`, so the data do not change with another crate's sampler.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::dataset::Dataset;
use crate::data::encoding::TargetScale;
use crate::error::{Error, Result};

/// Rows per split in the paper's experiments (train, meta and test alike).
pub const PAPER_N: usize = 2000;

/// Number of features in the paper's experiments.
pub const PAPER_N_FEATURES: usize = 100;

/// Number of signal components of the regression protocol ([`paper_component`]).
pub const N_PAPER_COMPONENTS: usize = 8;

/// Number of signal components of the SpAM protocol ([`spam_component`]).
pub const N_SPAM_COMPONENTS: usize = 4;

/// Probability that a training target under noise [`RegressionNoise::A`] or
/// [`RegressionNoise::B`] comes from the outlier component.
pub const OUTLIER_PROBABILITY: f64 = 0.2;

/// Squared radius of the circle in [`circle_label`].
pub const CIRCLE_RADIUS_SQ: f64 = 0.08;

// ---------------------------------------------------------------------------------------------
// True functions
// ---------------------------------------------------------------------------------------------

/// The standard normal CDF, `Φ(z) = (1 + erf(z/√2))/2`.
fn std_normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2))
}

/// Component `f_{j+1}` of the regression protocol at `x` for `j < 8`, and `0` for every other
/// `j` (those features carry no signal). Handy for plotting the true shapes.
///
/// | `j` | function |
/// | --- | --- |
/// | 0 | `f1(x) = −2 sin(2x)` |
/// | 1 | `f2(x) = 8x²` |
/// | 2 | `f3(x) = 7 sin x / (2 − sin x)` |
/// | 3 | `f4(x) = 6 e^{−x}` |
/// | 4 | `f5(x) = x³ + 1.5 (x − 1)²` |
/// | 5 | `f6(x) = 5x` |
/// | 6 | `f7(x) = 10 sin(e^{−x/2})` |
/// | 7 | `f8(x) = −10 Φ(x; 0.5, 0.8)`, the normal CDF with mean 0.5 and sd 0.8 |
///
/// ```
/// use metaadd::data::synthetic::paper_component;
/// assert_eq!(paper_component(1, 0.5), 2.0);
/// assert_eq!(paper_component(7, 0.5), -5.0);
/// assert_eq!(paper_component(8, 0.5), 0.0);
/// ```
pub fn paper_component(j: usize, x: f64) -> f64 {
    match j {
        0 => -2.0 * (2.0 * x).sin(),
        1 => 8.0 * x * x,
        2 => 7.0 * x.sin() / (2.0 - x.sin()),
        3 => 6.0 * (-x).exp(),
        4 => x.powi(3) + 1.5 * (x - 1.0).powi(2),
        5 => 5.0 * x,
        6 => 10.0 * (-x / 2.0).exp().sin(),
        7 => -10.0 * std_normal_cdf((x - 0.5) / 0.8),
        _ => 0.0,
    }
}

/// The noiseless regression signal of one feature row, `Σ_{j<8} paper_component(j, row[j])`,
/// before standardisation. Extra features beyond the eighth contribute nothing.
pub fn paper_signal(row: &[f64]) -> f64 {
    row.iter()
        .take(N_PAPER_COMPONENTS)
        .enumerate()
        .map(|(j, &x)| paper_component(j, x))
        .sum()
}

/// Component `g_{j+1}` of the classic SpAM design at `x` for `j < 4`, and `0` for every other
/// `j`.
///
/// | `j` | function |
/// | --- | --- |
/// | 0 | `g1(x) = −2 sin(2x)` |
/// | 1 | `g2(x) = x² − 1/3` |
/// | 2 | `g3(x) = x − 1/2` |
/// | 3 | `g4(x) = e^{−x} + e^{−1} − 1` |
pub fn spam_component(j: usize, x: f64) -> f64 {
    match j {
        0 => -2.0 * (2.0 * x).sin(),
        1 => x * x - 1.0 / 3.0,
        2 => x - 0.5,
        3 => (-x).exp() + (-1.0f64).exp() - 1.0,
        _ => 0.0,
    }
}

/// The noiseless SpAM signal of one feature row, `Σ_{j<4} spam_component(j, row[j])`, before
/// standardisation.
pub fn spam_signal(row: &[f64]) -> f64 {
    row.iter()
        .take(N_SPAM_COMPONENTS)
        .enumerate()
        .map(|(j, &x)| spam_component(j, x))
        .sum()
}

/// The class of the circle design: `1.0` when `(x1 − 0.5)² + (x2 − 0.5)² > 0.08` (outside the
/// circle), else `0.0`.
///
/// ```
/// use metaadd::data::synthetic::circle_label;
/// assert_eq!(circle_label(0.5, 0.5), 0.0);
/// assert_eq!(circle_label(0.0, 0.0), 1.0);
/// ```
pub fn circle_label(x1: f64, x2: f64) -> f64 {
    if (x1 - 0.5).powi(2) + (x2 - 0.5).powi(2) > CIRCLE_RADIUS_SQ {
        1.0
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------------------
// Samplers and shared helpers
// ---------------------------------------------------------------------------------------------

/// Uniform on `[0, 1)`.
fn unit(rng: &mut StdRng) -> f64 {
    rng.random::<f64>()
}

/// Standard normal draw (Box–Muller, one value per two uniforms).
fn std_normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - unit(rng); // (0, 1]: the log is finite
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Student-t draw with 2 degrees of freedom by its inverse CDF
/// `t = (2u − 1) / √(2u(1 − u))`, `u ~ U(0, 1)`.
fn student_t2(rng: &mut StdRng) -> f64 {
    loop {
        let u = unit(rng);
        if u > 0.0 {
            return (2.0 * u - 1.0) / (2.0 * u * (1.0 - u)).sqrt();
        }
    }
}

/// One independent generator per part of a split set, seeded from `StdRng::seed_from_u64(seed)`.
fn part_rngs(seed: u64) -> [StdRng; 4] {
    let mut master = StdRng::seed_from_u64(seed);
    std::array::from_fn(|_| StdRng::from_rng(&mut master))
}

/// `x1, …, xp`.
fn feature_names(p: usize) -> Vec<String> {
    (1..=p).map(|j| format!("x{j}")).collect()
}

fn dataset(x: Vec<f64>, p: usize, y: Vec<f64>) -> Result<Dataset> {
    Dataset::new(x, p, y)?.with_feature_names(feature_names(p))
}

fn check_rows(name: &'static str, n: usize) -> Result<()> {
    if n < 2 {
        return Err(Error::param(
            name,
            format!("needs at least 2 rows, got {n}"),
        ));
    }
    Ok(())
}

fn check_features(p: usize, min: usize, why: &str) -> Result<()> {
    if p < min {
        return Err(Error::param(
            "n_features",
            format!("needs at least {min} features ({why}), got {p}"),
        ));
    }
    Ok(())
}

/// A fraction in `[0, 1)`.
fn check_fraction(name: &'static str, v: f64) -> Result<()> {
    if !(v.is_finite() && (0.0..1.0).contains(&v)) {
        return Err(Error::param(name, format!("must lie in [0, 1), got {v}")));
    }
    Ok(())
}

fn check_nonnegative(name: &'static str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(Error::param(
            name,
            format!("must be finite and non-negative, got {v}"),
        ));
    }
    Ok(())
}

/// `round(n · fraction)`, halves away from zero.
fn count_of(n: usize, fraction: f64) -> usize {
    ((n as f64) * fraction).round() as usize
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

/// A generated train / meta / test triple with its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    /// Training set, the only one with corrupted targets.
    pub train: Dataset,
    /// Clean meta set (regression: noiseless targets; classification: correct labels, exactly
    /// balanced).
    pub meta: Dataset,
    /// Clean test set, generated like the meta set.
    pub test: Dataset,
    /// One flag per training row: drawn from the outlier component (noise A and B), or label
    /// flipped (classification). All `false` otherwise.
    pub corrupted: Vec<bool>,
    /// Zero-based indices of the features that carry signal, ascending.
    pub true_features: Vec<usize>,
    /// The number subtracted from every regression target (the meta set's mean of the raw
    /// targets); `0.0` for classification.
    pub target_mean: f64,
    /// The number every centred regression target was divided by (the meta set's standard
    /// deviation of the raw targets, divisor `n`); `1.0` for classification.
    pub target_sd: f64,
}

// ---------------------------------------------------------------------------------------------
// Protocol 1: regression
// ---------------------------------------------------------------------------------------------

/// The training noise of the regression protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegressionNoise {
    /// Mixture `0.8·N(−2, 1) + 0.2·N(8, 1)`; the `N(8, 1)` draws are flagged as corrupted.
    A,
    /// Mixture `0.8·N(0, 1) + 0.2·N(20, 1)`; the `N(20, 1)` draws are flagged as corrupted.
    B,
    /// Student-t with 2 degrees of freedom (heavy tails, infinite variance); nothing flagged.
    C,
    /// Standard normal `N(0, 1)`; nothing flagged.
    Gaussian,
}

impl RegressionNoise {
    /// All four kinds, in declaration order.
    pub const ALL: [RegressionNoise; 4] = [Self::A, Self::B, Self::C, Self::Gaussian];

    /// Probability that a draw comes from the flagged outlier component: `0.2` for A and B,
    /// `0` for C and Gaussian.
    pub fn outlier_probability(self) -> f64 {
        match self {
            Self::A | Self::B => OUTLIER_PROBABILITY,
            Self::C | Self::Gaussian => 0.0,
        }
    }

    /// One noise draw and whether it came from the outlier component.
    fn sample(self, rng: &mut StdRng) -> (f64, bool) {
        let mixture = |rng: &mut StdRng, inlier: f64, outlier: f64| {
            let is_outlier = unit(rng) < OUTLIER_PROBABILITY;
            let centre = if is_outlier { outlier } else { inlier };
            (centre + std_normal(rng), is_outlier)
        };
        match self {
            Self::A => mixture(rng, -2.0, 8.0),
            Self::B => mixture(rng, 0.0, 20.0),
            Self::C => (student_t2(rng), false),
            Self::Gaussian => (std_normal(rng), false),
        }
    }
}

impl fmt::Display for RegressionNoise {
    /// `A`, `B`, `C` or `Gaussian` (parses back with [`FromStr`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::A => "A",
            Self::B => "B",
            Self::C => "C",
            Self::Gaussian => "Gaussian",
        })
    }
}

impl FromStr for RegressionNoise {
    type Err = Error;

    /// Parses `a`, `b`, `c` or `gaussian`, ignoring case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "a" => Ok(Self::A),
            "b" => Ok(Self::B),
            "c" => Ok(Self::C),
            "gaussian" => Ok(Self::Gaussian),
            _ => Err(Error::param(
                "noise",
                format!("unknown regression noise `{s}` (expected a, b, c or gaussian)"),
            )),
        }
    }
}

/// The paper's regression protocol: `X ~ U(−1, 1)^p`, `y = Σ_{j≤8} f_j(x_j) + ε` with the
/// components of [`paper_component`] and training noise `ε` of the chosen [`RegressionNoise`].
///
/// Meta and test targets are the noiseless `f(x)`. All targets are then standardised with the
/// meta set's mean and standard deviation (see the [module docs](self)). The first eight
/// features carry signal; the rest are pure noise features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionProtocol {
    /// Training rows (default 2000).
    pub n_train: usize,
    /// Meta rows (default 2000).
    pub n_meta: usize,
    /// Test rows (default 2000).
    pub n_test: usize,
    /// Features `p` (default 100, at least 8).
    pub n_features: usize,
    /// Training noise.
    pub noise: RegressionNoise,
}

/// The split-size setters and checks shared by the three protocols.
macro_rules! split_sizes {
    ($($protocol:ty),*) => {$(
        impl $protocol {
            /// Sets the rows of all three splits.
            pub fn n(mut self, n: usize) -> Self {
                self.n_train = n;
                self.n_meta = n;
                self.n_test = n;
                self
            }

            /// Sets the training rows.
            pub fn n_train(mut self, n: usize) -> Self {
                self.n_train = n;
                self
            }

            /// Sets the meta rows.
            pub fn n_meta(mut self, n: usize) -> Self {
                self.n_meta = n;
                self
            }

            /// Sets the test rows.
            pub fn n_test(mut self, n: usize) -> Self {
                self.n_test = n;
                self
            }

            /// Sets the number of features `p` (see `generate` for the minimum).
            pub fn n_features(mut self, p: usize) -> Self {
                self.n_features = p;
                self
            }

            fn check_rows(&self) -> Result<()> {
                check_rows("n_train", self.n_train)?;
                check_rows("n_meta", self.n_meta)?;
                check_rows("n_test", self.n_test)
            }
        }
    )*};
}

split_sizes!(RegressionProtocol, ClassificationProtocol, SpamProtocol);

impl RegressionProtocol {
    /// The paper's sizes (2000 rows per split, 100 features) with the given training noise.
    pub fn new(noise: RegressionNoise) -> Self {
        Self {
            n_train: PAPER_N,
            n_meta: PAPER_N,
            n_test: PAPER_N,
            n_features: PAPER_N_FEATURES,
            noise,
        }
    }

    /// Sets the training noise.
    pub fn noise(mut self, noise: RegressionNoise) -> Self {
        self.noise = noise;
        self
    }

    /// Draws the three splits from `seed`.
    ///
    /// Fails with [`Error::InvalidParameter`] when a split has fewer than 2 rows or there are
    /// fewer than 8 features.
    ///
    /// ```
    /// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
    ///
    /// let protocol = RegressionProtocol::new(RegressionNoise::B).n(200).n_features(10);
    /// let splits = protocol.generate(7)?;
    /// assert_eq!((splits.train.n_samples(), splits.train.n_features()), (200, 10));
    /// assert_eq!(splits.train.feature_names()[0], "x1");
    /// assert_eq!(splits.true_features, (0..8).collect::<Vec<_>>());
    /// // About a fifth of the training targets come from the N(20, 1) component.
    /// let flagged = splits.corrupted.iter().filter(|&&c| c).count();
    /// assert!((20..=70).contains(&flagged));
    /// // Same seed, same data.
    /// assert_eq!(protocol.generate(7)?, splits);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn generate(&self, seed: u64) -> Result<Splits> {
        self.check_rows()?;
        check_features(
            self.n_features,
            N_PAPER_COMPONENTS,
            "the first 8 carry the signal",
        )?;
        let p = self.n_features;
        let [mut rng_x, mut rng_noise, mut rng_meta, mut rng_test] = part_rngs(seed);

        let draw_x = |rng: &mut StdRng, n: usize| -> Vec<f64> {
            (0..n * p).map(|_| 2.0 * unit(rng) - 1.0).collect()
        };
        let signal = |x: &[f64]| -> Vec<f64> { x.chunks_exact(p).map(paper_signal).collect() };

        let train_x = draw_x(&mut rng_x, self.n_train);
        let mut train_y = signal(&train_x);
        let mut corrupted = Vec::with_capacity(self.n_train);
        for y in &mut train_y {
            let (eps, outlier) = self.noise.sample(&mut rng_noise);
            *y += eps;
            corrupted.push(outlier);
        }
        let meta_x = draw_x(&mut rng_meta, self.n_meta);
        let meta_y = signal(&meta_x);
        let test_x = draw_x(&mut rng_test, self.n_test);
        let test_y = signal(&test_x);

        let scale = TargetScale::fit(&meta_y)?;
        let (mean, sd) = (scale.mean(), scale.sd());
        let [train_y, meta_y, test_y] = [&train_y, &meta_y, &test_y].map(|y| scale.encode(y));
        Ok(Splits {
            train: dataset(train_x, p, train_y)?,
            meta: dataset(meta_x, p, meta_y)?,
            test: dataset(test_x, p, test_y)?,
            corrupted,
            true_features: (0..N_PAPER_COMPONENTS).collect(),
            target_mean: mean,
            target_sd: sd,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Protocol 2: classification
// ---------------------------------------------------------------------------------------------

/// How the training set of the [`ClassificationProtocol`] is corrupted. The default is no
/// corruption.
///
/// ```
/// use metaadd::data::synthetic::ClassificationCorruption;
/// let c = ClassificationCorruption::default().imbalance(0.15).flip(0.2);
/// assert_eq!((c.imbalance, c.flip), (Some(0.15), 0.2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClassificationCorruption {
    /// Share of the training rows whose true class is 1 (outside the circle, the minority
    /// class): the training set has exactly `round(n_train · imbalance)` such rows and the rest
    /// are class 0. Must lie in `(0, 1)` and leave both classes at least one row. `None`: the
    /// training set is balanced like the meta and test sets.
    pub imbalance: Option<f64>,
    /// Fraction of training labels flipped (`0 ↔ 1`), in `[0, 1)`: exactly
    /// `round(n_train · flip)` rows, chosen uniformly without replacement after the imbalance
    /// is applied, are flipped and flagged in [`Splits::corrupted`].
    pub flip: f64,
}

impl ClassificationCorruption {
    /// No corruption (balanced, no flips).
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets the minority (class 1) share of the training set.
    pub fn imbalance(mut self, share: f64) -> Self {
        self.imbalance = Some(share);
        self
    }

    /// Sets the fraction of flipped training labels.
    pub fn flip(mut self, fraction: f64) -> Self {
        self.flip = fraction;
        self
    }
}

/// The circle classification design: `x_ij = (W_ij + U_i)/2` with `W_ij, U_i ~ U(0, 1)` (one
/// `U_i` per row, shared by its features, so the features are correlated), and class
/// `y = 1{(x1 − 0.5)² + (x2 − 0.5)² > 0.08}` ([`circle_label`]); features 1 and 2 carry the
/// signal.
///
/// Each split is drawn by rejection sampling to fixed class counts, then shuffled: the meta and
/// test sets have exactly `n − ⌊n/2⌋` rows of class 0 and `⌊n/2⌋` of class 1 with correct
/// labels; the training set is balanced the same way unless
/// [`ClassificationCorruption::imbalance`] says otherwise, and then a fraction of its labels may
/// be flipped. Targets are `0.0` / `1.0` and are not standardised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassificationProtocol {
    /// Training rows (default 2000).
    pub n_train: usize,
    /// Meta rows (default 2000).
    pub n_meta: usize,
    /// Test rows (default 2000).
    pub n_test: usize,
    /// Features `p` (default 100, at least 2).
    pub n_features: usize,
    /// Training-set corruption.
    pub corruption: ClassificationCorruption,
}

impl Default for ClassificationProtocol {
    fn default() -> Self {
        Self::new(ClassificationCorruption::default())
    }
}

impl ClassificationProtocol {
    /// The paper's sizes (2000 rows per split, 100 features) with the given corruption.
    pub fn new(corruption: ClassificationCorruption) -> Self {
        Self {
            n_train: PAPER_N,
            n_meta: PAPER_N,
            n_test: PAPER_N,
            n_features: PAPER_N_FEATURES,
            corruption,
        }
    }

    /// Sets the training-set corruption.
    pub fn corruption(mut self, corruption: ClassificationCorruption) -> Self {
        self.corruption = corruption;
        self
    }

    /// Draws the three splits from `seed`.
    ///
    /// Fails with [`Error::InvalidParameter`] when a split has fewer than 2 rows, there are
    /// fewer than 2 features, `flip` is outside `[0, 1)`, or `imbalance` is outside `(0, 1)` or
    /// would leave a class without rows.
    ///
    /// ```
    /// use metaadd::data::synthetic::{ClassificationCorruption, ClassificationProtocol};
    ///
    /// let corruption = ClassificationCorruption::default().imbalance(0.15).flip(0.1);
    /// let splits = ClassificationProtocol::new(corruption).n(200).n_features(5).generate(1)?;
    /// assert_eq!(splits.corrupted.iter().filter(|&&c| c).count(), 20);
    /// assert_eq!(splits.meta.y().iter().sum::<f64>(), 100.0);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn generate(&self, seed: u64) -> Result<Splits> {
        self.check_rows()?;
        check_features(self.n_features, 2, "the first 2 carry the signal")?;
        check_fraction("flip", self.corruption.flip)?;
        let n = self.n_train;
        let train_class1 = match self.corruption.imbalance {
            None => n / 2,
            Some(share) => {
                if !(share.is_finite() && share > 0.0 && share < 1.0) {
                    return Err(Error::param(
                        "imbalance",
                        format!("must lie in (0, 1), got {share}"),
                    ));
                }
                let k = count_of(n, share);
                if k == 0 || k == n {
                    return Err(Error::param(
                        "imbalance",
                        format!(
                            "{share} of {n} training rows leaves {k} rows of class 1 and {} of \
                             class 0; both classes need at least one",
                            n - k
                        ),
                    ));
                }
                k
            }
        };
        let p = self.n_features;
        let [mut rng_train, mut rng_flip, mut rng_meta, mut rng_test] = part_rngs(seed);

        let (train_x, mut train_y) =
            circle_sample(&mut rng_train, p, n - train_class1, train_class1);
        let mut corrupted = vec![false; n];
        let mut order: Vec<usize> = (0..n).collect();
        for k in 0..count_of(n, self.corruption.flip) {
            let pick = rng_flip.random_range(k..n);
            order.swap(k, pick);
            let i = order[k];
            corrupted[i] = true;
            train_y[i] = 1.0 - train_y[i];
        }
        let balanced = |rng: &mut StdRng, n: usize| circle_sample(rng, p, n - n / 2, n / 2);
        let (meta_x, meta_y) = balanced(&mut rng_meta, self.n_meta);
        let (test_x, test_y) = balanced(&mut rng_test, self.n_test);

        Ok(Splits {
            train: dataset(train_x, p, train_y)?,
            meta: dataset(meta_x, p, meta_y)?,
            test: dataset(test_x, p, test_y)?,
            corrupted,
            true_features: vec![0, 1],
            target_mean: 0.0,
            target_sd: 1.0,
        })
    }
}

/// Rejection-samples rows of the circle design until there are exactly `n0` rows of class 0
/// and `n1` of class 1, then shuffles them. Returns row-major features and labels.
fn circle_sample(rng: &mut StdRng, p: usize, n0: usize, n1: usize) -> (Vec<f64>, Vec<f64>) {
    let n = n0 + n1;
    let mut x = Vec::with_capacity(n * p);
    let mut y = Vec::with_capacity(n);
    let mut need = [n0, n1];
    let mut row = vec![0.0; p];
    while y.len() < n {
        let u = unit(rng);
        for v in &mut row {
            *v = (unit(rng) + u) / 2.0;
        }
        let label = circle_label(row[0], row[1]);
        let class = label as usize;
        if need[class] > 0 {
            need[class] -= 1;
            x.extend_from_slice(&row);
            y.push(label);
        }
    }
    // Fisher–Yates, so the class that fills its quota last does not crowd the end.
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    let xs = perm
        .iter()
        .flat_map(|&i| x[i * p..(i + 1) * p].iter().copied())
        .collect();
    let ys = perm.iter().map(|&i| y[i]).collect();
    (xs, ys)
}

// ---------------------------------------------------------------------------------------------
// Protocol 3: classic SpAM
// ---------------------------------------------------------------------------------------------

/// The classic SpAM design: `x_j = (W_j + t·U)/(1 + t)` with `W_j, U ~ U(0, 1)` (one `U` per
/// row; `t` sets the correlation between features, `t²/(1 + t²)`), and
/// `y = g1(x1) + g2(x2) + g3(x3) + g4(x4) + ε` with the components of [`spam_component`] and
/// `ε ~ N(0, σ²)` on training targets only.
///
/// Meta and test targets are noiseless; all targets are standardised with the meta set's mean
/// and standard deviation, as in [`RegressionProtocol`]. The first four features carry signal.
///
/// ```
/// use metaadd::data::synthetic::SpamProtocol;
/// let splits = SpamProtocol::new().n(100).n_features(6).correlation(1.0).generate(3)?;
/// assert_eq!(splits.true_features, vec![0, 1, 2, 3]);
/// assert!(splits.test.x().iter().all(|v| (0.0..=1.0).contains(v)));
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpamProtocol {
    /// Training rows (default 2000).
    pub n_train: usize,
    /// Meta rows (default 2000).
    pub n_meta: usize,
    /// Test rows (default 2000).
    pub n_test: usize,
    /// Features `p` (default 100, at least 4).
    pub n_features: usize,
    /// Correlation parameter `t ≥ 0` (default 0: independent features).
    pub correlation: f64,
    /// Standard deviation `σ ≥ 0` of the training noise (default 1), on the raw scale.
    pub noise_sd: f64,
}

impl Default for SpamProtocol {
    fn default() -> Self {
        Self::new()
    }
}

impl SpamProtocol {
    /// 2000 rows per split, 100 features, `t = 0`, `σ = 1`.
    pub fn new() -> Self {
        Self {
            n_train: PAPER_N,
            n_meta: PAPER_N,
            n_test: PAPER_N,
            n_features: PAPER_N_FEATURES,
            correlation: 0.0,
            noise_sd: 1.0,
        }
    }

    /// Sets the correlation parameter `t` (finite, `≥ 0`).
    pub fn correlation(mut self, t: f64) -> Self {
        self.correlation = t;
        self
    }

    /// Sets the training noise's standard deviation `σ` (finite, `≥ 0`).
    pub fn noise_sd(mut self, sd: f64) -> Self {
        self.noise_sd = sd;
        self
    }

    /// Draws the three splits from `seed`.
    ///
    /// Fails with [`Error::InvalidParameter`] when a split has fewer than 2 rows, there are
    /// fewer than 4 features, or `correlation` or `noise_sd` is negative or not finite.
    pub fn generate(&self, seed: u64) -> Result<Splits> {
        self.check_rows()?;
        check_features(
            self.n_features,
            N_SPAM_COMPONENTS,
            "the first 4 carry the signal",
        )?;
        check_nonnegative("correlation", self.correlation)?;
        check_nonnegative("noise_sd", self.noise_sd)?;
        let p = self.n_features;
        let t = self.correlation;
        let [mut rng_x, mut rng_noise, mut rng_meta, mut rng_test] = part_rngs(seed);

        let draw_x = |rng: &mut StdRng, n: usize| -> Vec<f64> {
            let mut x = Vec::with_capacity(n * p);
            for _ in 0..n {
                let u = unit(rng);
                x.extend((0..p).map(|_| (unit(rng) + t * u) / (1.0 + t)));
            }
            x
        };
        let signal = |x: &[f64]| -> Vec<f64> { x.chunks_exact(p).map(spam_signal).collect() };

        let train_x = draw_x(&mut rng_x, self.n_train);
        let mut train_y = signal(&train_x);
        for y in &mut train_y {
            *y += self.noise_sd * std_normal(&mut rng_noise);
        }
        let meta_x = draw_x(&mut rng_meta, self.n_meta);
        let meta_y = signal(&meta_x);
        let test_x = draw_x(&mut rng_test, self.n_test);
        let test_y = signal(&test_x);

        let scale = TargetScale::fit(&meta_y)?;
        let (mean, sd) = (scale.mean(), scale.sd());
        let [train_y, meta_y, test_y] = [&train_y, &meta_y, &test_y].map(|y| scale.encode(y));
        Ok(Splits {
            train: dataset(train_x, p, train_y)?,
            meta: dataset(meta_x, p, meta_y)?,
            test: dataset(test_x, p, test_y)?,
            corrupted: vec![false; self.n_train],
            true_features: (0..N_SPAM_COMPONENTS).collect(),
            target_mean: mean,
            target_sd: sd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    fn sd(v: &[f64]) -> f64 {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    }

    /// Raw-scale training residuals `y − f(x)` (the noise draws), undoing the standardisation.
    fn train_residuals(splits: &Splits, signal: fn(&[f64]) -> f64) -> Vec<f64> {
        let d = &splits.train;
        (0..d.n_samples())
            .map(|i| d.y()[i] * splits.target_sd + splits.target_mean - signal(d.row(i)))
            .collect()
    }

    fn assert_clean(splits: &Splits, data: &Dataset, signal: fn(&[f64]) -> f64) {
        for i in 0..data.n_samples() {
            let want = (signal(data.row(i)) - splits.target_mean) / splits.target_sd;
            assert!((data.y()[i] - want).abs() < 1e-12, "row {i}");
        }
    }

    /// The values of `v` whose `mask` entry equals `flag`.
    fn flagged(v: &[f64], mask: &[bool], flag: bool) -> Vec<f64> {
        v.iter()
            .zip(mask)
            .filter(|&(_, &c)| c == flag)
            .map(|(x, _)| *x)
            .collect()
    }

    fn count(mask: &[bool]) -> usize {
        mask.iter().filter(|&&c| c).count()
    }

    #[test]
    fn components_match_the_paper() {
        let x = 0.3f64;
        let want = [
            -2.0 * (0.6f64).sin(),
            8.0 * 0.09,
            7.0 * x.sin() / (2.0 - x.sin()),
            6.0 * (-0.3f64).exp(),
            0.027 + 1.5 * 0.49,
            1.5,
            10.0 * (-0.15f64).exp().sin(),
            -10.0 * 0.5 * (1.0 + libm::erf(-0.2 / 0.8 / 2f64.sqrt())),
        ];
        for (j, w) in want.iter().enumerate() {
            assert!((paper_component(j, x) - w).abs() < 1e-12, "f{}", j + 1);
        }
        assert_eq!(paper_component(8, x), 0.0);
        assert_eq!(paper_component(99, x), 0.0);
        // Φ(0.5; 0.5, 0.8) = 1/2 and Φ(0.5 + 0.8; 0.5, 0.8) = Φ(1) = 0.841344746…
        assert_eq!(paper_component(7, 0.5), -5.0);
        assert!((paper_component(7, 1.3) + 8.413_447_460_685_429).abs() < 1e-12);
        assert_eq!(spam_component(1, 0.5), 0.25 - 1.0 / 3.0);
        assert_eq!(spam_component(3, 1.0), 2.0 * (-1.0f64).exp() - 1.0);
        assert_eq!(spam_component(4, 1.0), 0.0);
        let row = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8, 5.0, 5.0];
        let sum: f64 = (0..8).map(|j| paper_component(j, row[j])).sum();
        assert_eq!(paper_signal(&row), sum);
    }

    #[test]
    fn regression_same_seed_same_data_other_seed_other_data() {
        for noise in RegressionNoise::ALL {
            let p = RegressionProtocol::new(noise).n(300).n_features(12);
            let a = p.generate(42).unwrap();
            assert_eq!(a, p.generate(42).unwrap());
            let b = p.generate(43).unwrap();
            assert_ne!(a.train.x(), b.train.x());
            assert_ne!(a.train.y(), b.train.y());
            assert_ne!(a.meta.x(), b.meta.x());
            assert_ne!(a.test.x(), b.test.x());
        }
    }

    #[test]
    fn regression_streams_are_independent_of_noise_and_train_size() {
        let a = RegressionProtocol::new(RegressionNoise::A)
            .n(200)
            .n_features(9)
            .generate(5)
            .unwrap();
        let b = RegressionProtocol::new(RegressionNoise::C)
            .n(200)
            .n_train(500)
            .n_features(9)
            .generate(5)
            .unwrap();
        assert_eq!(a.meta, b.meta);
        assert_eq!(a.test, b.test);
        assert_eq!(a.train.x(), &b.train.x()[..200 * 9]);
    }

    #[test]
    fn regression_shapes_names_and_ranges() {
        let s = RegressionProtocol::new(RegressionNoise::Gaussian)
            .n_train(50)
            .n_meta(30)
            .n_test(40)
            .n_features(11)
            .generate(0)
            .unwrap();
        assert_eq!(s.train.n_samples(), 50);
        assert_eq!(s.meta.n_samples(), 30);
        assert_eq!(s.test.n_samples(), 40);
        assert_eq!(s.corrupted, vec![false; 50]);
        assert_eq!(s.true_features, (0..8).collect::<Vec<_>>());
        for d in [&s.train, &s.meta, &s.test] {
            assert_eq!(d.n_features(), 11);
            assert_eq!(d.feature_names()[0], "x1");
            assert_eq!(d.feature_names()[10], "x11");
            assert_eq!(d.target_name(), "y");
            assert!(d.x().iter().all(|v| (-1.0..1.0).contains(v)));
        }
        // The draws fill the whole cube, not a corner of it.
        let x = s.train.x();
        let (lo, hi) = x
            .iter()
            .fold((1.0f64, -1.0f64), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(lo < -0.95 && hi > 0.95, "{lo} {hi}");
        assert!(mean(x).abs() < 0.1); // 4 standard errors for 550 draws
    }

    #[test]
    fn regression_meta_and_test_are_clean_and_standardised() {
        for noise in RegressionNoise::ALL {
            let s = RegressionProtocol::new(noise)
                .n(500)
                .n_features(10)
                .generate(9)
                .unwrap();
            assert_clean(&s, &s.meta, paper_signal);
            assert_clean(&s, &s.test, paper_signal);
            assert!(mean(s.meta.y()).abs() < 1e-12);
            assert!((sd(s.meta.y()) - 1.0).abs() < 1e-12);
            assert!(s.target_sd > 1.0);
            // The test set is standardised with the meta numbers, not its own.
            assert!(mean(s.test.y()).abs() > 1e-6);
            assert!(mean(s.test.y()).abs() < 0.2);
        }
    }

    #[test]
    fn noise_b_flags_a_fifth_of_rows_centred_at_20() {
        let n = 4000;
        let s = RegressionProtocol::new(RegressionNoise::B)
            .n_train(n)
            .n_meta(500)
            .n_test(2)
            .n_features(8)
            .generate(2024)
            .unwrap();
        let k = count(&s.corrupted) as f64;
        let three_sd = 3.0 * (n as f64 * 0.2 * 0.8).sqrt();
        assert!((k - 0.2 * n as f64).abs() < three_sd, "{k} flagged");
        let r = train_residuals(&s, paper_signal);
        let (out, inl) = (
            flagged(&r, &s.corrupted, true),
            flagged(&r, &s.corrupted, false),
        );
        // Means within 5 standard errors (1/√800 ≈ 0.035, 1/√3200 ≈ 0.018).
        assert!((mean(&out) - 20.0).abs() < 0.18, "{}", mean(&out));
        assert!(mean(&inl).abs() < 0.09, "{}", mean(&inl));
        assert!((sd(&out) - 1.0).abs() < 0.1);
        assert!((sd(&inl) - 1.0).abs() < 0.05);
    }

    #[test]
    fn noise_a_mixture_components() {
        let n = 4000;
        let s = RegressionProtocol::new(RegressionNoise::A)
            .n_train(n)
            .n_meta(500)
            .n_test(2)
            .n_features(8)
            .generate(7)
            .unwrap();
        let k = count(&s.corrupted) as f64;
        assert!((k - 800.0).abs() < 3.0 * 640f64.sqrt(), "{k} flagged");
        let r = train_residuals(&s, paper_signal);
        let pick = |flag: bool| flagged(&r, &s.corrupted, flag);
        assert!((mean(&pick(true)) - 8.0).abs() < 0.18);
        assert!((mean(&pick(false)) + 2.0).abs() < 0.09);
    }

    #[test]
    fn noise_gaussian_and_student_t() {
        let base = RegressionProtocol::new(RegressionNoise::Gaussian)
            .n_train(20_000)
            .n_meta(200)
            .n_test(2)
            .n_features(8);
        let g = base.generate(1).unwrap();
        let r = train_residuals(&g, paper_signal);
        assert!(mean(&r).abs() < 0.03, "{}", mean(&r));
        assert!((sd(&r) - 1.0).abs() < 0.02, "{}", sd(&r));
        let skew = r.iter().map(|v| v.powi(3)).sum::<f64>() / r.len() as f64;
        assert!(skew.abs() < 0.08);

        let t = base.noise(RegressionNoise::C).generate(1).unwrap();
        assert_eq!(count(&t.corrupted), 0);
        let mut r = train_residuals(&t, paper_signal);
        r.sort_by(f64::total_cmp);
        let q = |p: f64| r[(p * r.len() as f64) as usize];
        // t₂ quantiles: median 0, quartiles ±√(2/3) = ±0.816497, 95% point 2.919986.
        assert!(q(0.5).abs() < 0.03);
        assert!(
            (q(0.75) - (2.0f64 / 3.0).sqrt()).abs() < 0.04,
            "{}",
            q(0.75)
        );
        assert!(
            (q(0.25) + (2.0f64 / 3.0).sqrt()).abs() < 0.04,
            "{}",
            q(0.25)
        );
        assert!((q(0.95) - 2.919_986).abs() < 0.2, "{}", q(0.95));
    }

    #[test]
    fn regression_validation_names_the_parameter() {
        let base = RegressionProtocol::new(RegressionNoise::A).n(10);
        let name = |r: Result<Splits>| match r {
            Err(Error::InvalidParameter { name, .. }) => name,
            other => panic!("expected InvalidParameter, got {other:?}"),
        };
        assert_eq!(name(base.n_features(7).generate(0)), "n_features");
        assert_eq!(name(base.n_train(1).generate(0)), "n_train");
        assert_eq!(name(base.n_meta(0).generate(0)), "n_meta");
        assert_eq!(name(base.n_test(1).generate(0)), "n_test");
        assert!(base.n(2).n_features(8).generate(0).is_ok());
    }

    #[test]
    fn noise_parses_and_displays() {
        for noise in RegressionNoise::ALL {
            assert_eq!(noise.to_string().parse::<RegressionNoise>().unwrap(), noise);
        }
        assert_eq!(
            " GAUSSIAN ".parse::<RegressionNoise>().unwrap(),
            RegressionNoise::Gaussian
        );
        assert_eq!("b".parse::<RegressionNoise>().unwrap(), RegressionNoise::B);
        assert!(matches!(
            "d".parse::<RegressionNoise>(),
            Err(Error::InvalidParameter { name: "noise", .. })
        ));
        assert_eq!(RegressionNoise::B.outlier_probability(), 0.2);
        assert_eq!(RegressionNoise::C.outlier_probability(), 0.0);
    }

    #[test]
    fn classification_reproducible() {
        let p = ClassificationProtocol::new(ClassificationCorruption::none().flip(0.2))
            .n(200)
            .n_features(6);
        let a = p.generate(11).unwrap();
        assert_eq!(a, p.generate(11).unwrap());
        let b = p.generate(12).unwrap();
        assert_ne!(a.train.x(), b.train.x());
        assert_ne!(a.corrupted, b.corrupted);
        assert_ne!(a.meta.x(), b.meta.x());
        assert_ne!(a.test.x(), b.test.x());
    }

    #[test]
    fn classification_meta_test_clean_and_balanced() {
        let corruption = ClassificationCorruption::default()
            .imbalance(0.15)
            .flip(0.25);
        let s = ClassificationProtocol::new(corruption)
            .n_train(400)
            .n_meta(300)
            .n_test(501)
            .n_features(7)
            .generate(3)
            .unwrap();
        assert_eq!(s.true_features, vec![0, 1]);
        assert_eq!((s.target_mean, s.target_sd), (0.0, 1.0));
        for (d, n) in [(&s.meta, 300), (&s.test, 501)] {
            assert_eq!(d.n_samples(), n);
            let ones = d.y().iter().filter(|&&y| y == 1.0).count();
            let zeros = d.y().iter().filter(|&&y| y == 0.0).count();
            assert_eq!((zeros, ones), (n - n / 2, n / 2));
            for i in 0..n {
                let r = d.row(i);
                assert_eq!(d.y()[i], circle_label(r[0], r[1]));
            }
        }
        for d in [&s.train, &s.meta, &s.test] {
            assert!(d.x().iter().all(|v| (0.0..1.0).contains(v)));
            assert_eq!(d.feature_names()[6], "x7");
        }
        // Shuffled: the first half is not all one class.
        let first_half: f64 = s.meta.y()[..150].iter().sum();
        assert!(first_half > 40.0 && first_half < 110.0, "{first_half}");
    }

    #[test]
    fn classification_imbalance_and_flips_are_exact() {
        for (n, imbalance, flip) in [(400, 0.15, 0.2), (333, 0.1, 0.05), (200, 0.5, 0.0)] {
            let corruption = ClassificationCorruption::none()
                .imbalance(imbalance)
                .flip(flip);
            let s = ClassificationProtocol::new(corruption)
                .n_train(n)
                .n_meta(10)
                .n_test(10)
                .n_features(3)
                .generate(n as u64)
                .unwrap();
            let d = &s.train;
            assert_eq!(d.n_samples(), n);
            assert_eq!(count(&s.corrupted), (n as f64 * flip).round() as usize);
            let mut true_ones = 0;
            for i in 0..n {
                let r = d.row(i);
                let truth = circle_label(r[0], r[1]);
                true_ones += truth as usize;
                assert_eq!(d.y()[i] != truth, s.corrupted[i], "row {i}");
            }
            assert_eq!(true_ones, (n as f64 * imbalance).round() as usize);
        }
        // No imbalance: balanced training set, no flags.
        let s = ClassificationProtocol::default()
            .n(100)
            .n_features(2)
            .generate(0)
            .unwrap();
        assert_eq!(s.train.y().iter().sum::<f64>(), 50.0);
        assert_eq!(s.corrupted, vec![false; 100]);
    }

    #[test]
    fn classification_features_share_the_row_effect() {
        let s = ClassificationProtocol::default()
            .n(1000)
            .n_features(4)
            .generate(8)
            .unwrap();
        let (a, b) = (s.test.column(2), s.test.column(3));
        let (ma, mb) = (mean(&a), mean(&b));
        let cov = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - ma) * (y - mb))
            .sum::<f64>()
            / a.len() as f64;
        // Var(W) = Var(U) = 1/12, so the correlation of two features is 1/2 (balanced
        // rejection sampling on x1, x2 leaves x3, x4 roughly as drawn).
        let corr = cov / (sd(&a) * sd(&b));
        assert!((corr - 0.5).abs() < 0.08, "{corr}");
    }

    #[test]
    fn classification_validation_names_the_parameter() {
        let name =
            |c: ClassificationCorruption, n: usize, p: usize| match ClassificationProtocol::new(c)
                .n(n)
                .n_features(p)
                .generate(0)
            {
                Err(Error::InvalidParameter { name, .. }) => name,
                other => panic!("expected InvalidParameter, got {other:?}"),
            };
        let none = ClassificationCorruption::none();
        assert_eq!(name(none.flip(1.0), 10, 2), "flip");
        assert_eq!(name(none.flip(-0.1), 10, 2), "flip");
        assert_eq!(name(none.flip(f64::NAN), 10, 2), "flip");
        assert_eq!(name(none.imbalance(0.0), 10, 2), "imbalance");
        assert_eq!(name(none.imbalance(1.0), 10, 2), "imbalance");
        assert_eq!(name(none.imbalance(0.01), 10, 2), "imbalance");
        assert_eq!(name(none, 10, 1), "n_features");
        assert_eq!(name(none, 1, 2), "n_train");
    }

    #[test]
    fn spam_design() {
        let p = SpamProtocol::new()
            .n(4000)
            .n_meta(500)
            .n_test(300)
            .n_features(5);
        let s = p.noise_sd(0.5).generate(21).unwrap();
        assert_eq!(s, p.noise_sd(0.5).generate(21).unwrap());
        assert_ne!(s.train.x(), p.noise_sd(0.5).generate(22).unwrap().train.x());
        assert_eq!(s.true_features, vec![0, 1, 2, 3]);
        assert_eq!(count(&s.corrupted), 0);
        assert_clean(&s, &s.meta, spam_signal);
        assert_clean(&s, &s.test, spam_signal);
        assert!(mean(s.meta.y()).abs() < 1e-12);
        assert!((sd(s.meta.y()) - 1.0).abs() < 1e-12);
        let r = train_residuals(&s, spam_signal);
        assert!(mean(&r).abs() < 0.03);
        assert!((sd(&r) - 0.5).abs() < 0.02, "{}", sd(&r));
        for d in [&s.train, &s.meta, &s.test] {
            assert!(d.x().iter().all(|v| (0.0..1.0).contains(v)));
        }
        // t = 0: independent features.
        let (a, b) = (s.train.column(0), s.train.column(4));
        let corr = |a: &[f64], b: &[f64]| {
            let (ma, mb) = (mean(a), mean(b));
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - ma) * (y - mb))
                .sum::<f64>()
                / a.len() as f64
                / (sd(a) * sd(b))
        };
        assert!(corr(&a, &b).abs() < 0.05);
        // t = 1: correlation t²/(1 + t²) = 1/2, features stay in [0, 1].
        let c = p.correlation(1.0).generate(21).unwrap();
        let (a, b) = (c.train.column(1), c.train.column(3));
        assert!((corr(&a, &b) - 0.5).abs() < 0.05, "{}", corr(&a, &b));
        assert!(c.train.x().iter().all(|v| (0.0..=1.0).contains(v)));
        // σ = 0: training targets are clean too.
        let z = p.noise_sd(0.0).generate(4).unwrap();
        assert_clean(&z, &z.train, spam_signal);
    }

    #[test]
    fn spam_validation_names_the_parameter() {
        let name = |p: SpamProtocol| match p.generate(0) {
            Err(Error::InvalidParameter { name, .. }) => name,
            other => panic!("expected InvalidParameter, got {other:?}"),
        };
        let p = SpamProtocol::new().n(10).n_features(4);
        assert_eq!(name(p.noise_sd(-1.0)), "noise_sd");
        assert_eq!(name(p.noise_sd(f64::INFINITY)), "noise_sd");
        assert_eq!(name(p.correlation(-0.5)), "correlation");
        assert_eq!(name(p.correlation(f64::NAN)), "correlation");
        assert_eq!(name(p.n_features(3)), "n_features");
        assert_eq!(name(p.n_test(1)), "n_test");
        assert!(p.generate(0).is_ok());
    }

    #[test]
    fn paper_defaults() {
        let r = RegressionProtocol::new(RegressionNoise::C);
        assert_eq!(
            (r.n_train, r.n_meta, r.n_test, r.n_features),
            (2000, 2000, 2000, 100)
        );
        let c = ClassificationProtocol::default();
        assert_eq!(
            (c.n_train, c.n_meta, c.n_test, c.n_features),
            (2000, 2000, 2000, 100)
        );
        assert_eq!(
            c.corruption,
            ClassificationCorruption {
                imbalance: None,
                flip: 0.0
            }
        );
        let s = SpamProtocol::default();
        assert_eq!(
            (s.n_train, s.n_features, s.correlation, s.noise_sd),
            (2000, 100, 0.0, 1.0)
        );
        // Full paper size runs and is standardised.
        let full = r.generate(0).unwrap();
        assert_eq!(full.train.x().len(), 2000 * 100);
        assert!((sd(full.meta.y()) - 1.0).abs() < 1e-12);
    }
}
