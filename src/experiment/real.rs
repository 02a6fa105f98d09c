//! Corrupt-and-recover on real tables: a clean table is split 60 / 10 / 30 into training, meta
//! and test sets (stratified by class for classification, from the seed), and only the
//! training split is corrupted, so that the meta and test sets stay clean.
//!
//! Regression targets are first standardised with the mean and standard deviation of the clean
//! training split (so test MSEs compare across tables, and "5 sd" means 5); corruptions are
//! then written on that scale.

use crate::data::split::{balanced_holdout, flip_labels, holdout, three_way};
use crate::data::synthetic::Splits;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::prepare::MetaSelect;
use crate::Task;
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use std::fmt;

/// Shares of a real table's rows held out as the meta and the test set.
pub const REAL_META_SHARE: f64 = 0.1;
/// See [`REAL_META_SHARE`].
pub const REAL_TEST_SHARE: f64 = 0.3;

/// What is done to a real table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Corruption {
    /// `share` of the training targets moved up by 5 standard deviations (regression).
    OneSided {
        /// Fraction of training rows moved.
        share: f64,
    },
    /// `share` of the training targets moved by ±5 standard deviations, the sign at random
    /// (regression).
    TwoSided {
        /// Fraction of training rows moved.
        share: f64,
    },
    /// Student-t noise with 2 degrees of freedom, scale ½ sd, added to every training target
    /// (regression): no finite variance.
    HeavyTails,
    /// `share` of the training labels moved to another class (classification).
    Flip {
        /// Fraction of training labels moved.
        share: f64,
    },
    /// The smaller class of a binary table subsampled (before the split, so every split has
    /// the same imbalance) to `share` of the rows, then `flip` of the training labels moved.
    Minority {
        /// The minority class's share of the rows.
        share: f64,
        /// Fraction of training labels moved afterwards (0: none).
        flip: f64,
    },
}

impl Corruption {
    /// Whether the corruption suits a task's targets.
    pub fn suits(&self, task: Task) -> bool {
        match self {
            Self::OneSided { .. } | Self::TwoSided { .. } | Self::HeavyTails => {
                task == Task::Regression
            }
            Self::Flip { .. } => task != Task::Regression,
            Self::Minority { .. } => task == Task::Binary,
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = |x: f64| format!("{}%", (100.0 * x).round());
        match *self {
            Self::OneSided { share } => write!(f, "outliers +5sd {}", percent(share)),
            Self::TwoSided { share } => write!(f, "outliers ±5sd {}", percent(share)),
            Self::HeavyTails => write!(f, "heavy tails"),
            Self::Flip { share } => write!(f, "flips {}", percent(share)),
            Self::Minority { share, flip } if flip > 0.0 => {
                write!(f, "minority {} + flips {}", percent(share), percent(flip))
            }
            Self::Minority { share, .. } => write!(f, "minority {}", percent(share)),
        }
    }
}

/// Training, meta and test sets of `data` (a regression table, or class indices `0..classes`)
/// corrupted by `corruption`, from `seed`.
///
/// ```
/// use metaadd::data::Dataset;
/// use metaadd::experiment::real::{corrupted_splits, Corruption};
/// use metaadd::Task;
/// let x: Vec<f64> = (0..200).map(f64::from).collect();
/// let y: Vec<f64> = (0..200).map(|i| (i as f64 * 0.1).sin()).collect();
/// let data = Dataset::new(x, 1, y)?;
/// let s = corrupted_splits(&data, Task::Regression, Corruption::OneSided { share: 0.2 }, 3)?;
/// assert_eq!((s.train.n_samples(), s.meta.n_samples(), s.test.n_samples()), (120, 20, 60));
/// assert_eq!(s.corrupted.iter().filter(|&&c| c).count(), 24);
/// // Moved rows sit 5 sd above where they were; the training targets were standardised first.
/// let mean = s.train.y().iter().zip(&s.corrupted).filter(|(_, &c)| !c).map(|(y, _)| y).sum::<f64>() / 96.0;
/// assert!(mean.abs() < 0.5);
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn corrupted_splits(
    data: &Dataset,
    task: Task,
    corruption: Corruption,
    seed: u64,
) -> Result<Splits> {
    corrupted_splits_with_shares(
        data,
        task,
        corruption,
        (REAL_META_SHARE, REAL_TEST_SHARE),
        MetaSelect::Random,
        seed,
    )
}

/// [`corrupted_splits`] with other (meta, test) shares of the rows, the training set taking
/// the rest (for meta-set-size sweeps and the digits protocol's 70/10/20), and the meta rows
/// drawn at random (stratified for classification) or, with [`MetaSelect::Balanced`], an
/// equal number from every class (at most half of a class's rows left by the test set, so a
/// balanced meta set can be smaller than `meta_share`). The test set is the same either way.
/// Features constant on the training rows are dropped from all three sets.
///
/// ```
/// use metaadd::data::Dataset;
/// use metaadd::experiment::real::{corrupted_splits_with_shares, Corruption};
/// use metaadd::prepare::MetaSelect;
/// use metaadd::Task;
/// // 400 rows, one of them in ten of class 1.
/// let y: Vec<f64> = (0..400).map(|i| f64::from(u8::from(i % 10 == 0))).collect();
/// let data = Dataset::new((0..400).map(f64::from).collect(), 1, y)?;
/// let none = Corruption::Flip { share: 0.0 };
/// let shares = (0.1, 0.3);
/// let random = corrupted_splits_with_shares(&data, Task::Binary, none, shares, MetaSelect::Random, 1)?;
/// let balanced =
///     corrupted_splits_with_shares(&data, Task::Binary, none, shares, MetaSelect::Balanced, 1)?;
/// let ones = |d: &Dataset| d.y().iter().filter(|&&v| v == 1.0).count();
/// assert_eq!((random.meta.n_samples(), ones(&random.meta)), (40, 4));
/// // 20 rows of class 0 and half of the 28 rows of class 1 that the test set leaves.
/// assert_eq!((balanced.meta.n_samples(), ones(&balanced.meta)), (34, 14));
/// assert_eq!(balanced.test.x(), random.test.x());
/// # Ok::<(), metaadd::Error>(())
/// ```
pub fn corrupted_splits_with_shares(
    data: &Dataset,
    task: Task,
    corruption: Corruption,
    (meta_share, test_share): (f64, f64),
    meta_select: MetaSelect,
    seed: u64,
) -> Result<Splits> {
    if !corruption.suits(task) {
        return Err(Error::param(
            "corruption",
            format!("{corruption} does not suit a {task} task"),
        ));
    }
    let classification = task != Task::Regression;
    let data = match corruption {
        Corruption::Minority { share, .. } => minority(data, share, seed.wrapping_add(500))?,
        _ => data.clone(),
    };
    let (train, meta, test) = match meta_select {
        MetaSelect::Random => three_way(&data, meta_share, test_share, classification, seed)?,
        MetaSelect::Balanced if classification => {
            // The test rows as `three_way` holds them out, then a balanced meta set.
            let (rest, test) = holdout(&data, test_share, true, seed)?;
            let frac = meta_share / (1.0 - test_share);
            let (train, meta) = balanced_holdout(&rest, frac, seed.wrapping_add(1))?;
            (train, meta, test)
        }
        other => {
            return Err(Error::param(
                "meta_select",
                format!("a {other} meta set is not drawn by the real protocol for a {task} task"),
            ))
        }
    };
    // A column constant on the training rows carries nothing a fit can use and is refused by
    // it (a rare pixel of digits can miss a 60% split): dropped from the three splits.
    let varying: Vec<usize> = (0..train.n_features())
        .filter(|&j| {
            let column = train.column(j);
            column.iter().any(|v| *v != column[0])
        })
        .collect();
    let (train, meta, test) = if varying.len() == train.n_features() {
        (train, meta, test)
    } else {
        (
            train.select_features(&varying)?,
            meta.select_features(&varying)?,
            test.select_features(&varying)?,
        )
    };
    let (mut target_mean, mut target_sd) = (0.0, 1.0);
    let (train, meta, test) = if classification {
        (train, meta, test)
    } else {
        // Standardised by the clean training targets.
        let y = train.y();
        let n = y.len() as f64;
        target_mean = y.iter().sum::<f64>() / n;
        target_sd = (y.iter().map(|v| (v - target_mean).powi(2)).sum::<f64>() / n).sqrt();
        if target_sd.is_nan() || target_sd <= 0.0 {
            return Err(Error::invalid("the training targets are constant"));
        }
        let scaled = |d: &Dataset| -> Result<Dataset> {
            d.with_targets(
                d.y()
                    .iter()
                    .map(|v| (v - target_mean) / target_sd)
                    .collect(),
            )
        };
        (scaled(&train)?, scaled(&meta)?, scaled(&test)?)
    };
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(400));
    let n = train.n_samples();
    let mut y = train.y().to_vec();
    let mut corrupted = vec![false; n];
    let pick = |share: f64, rng: &mut StdRng| -> Vec<usize> {
        let mut rows: Vec<usize> = (0..n).collect();
        rows.shuffle(rng);
        rows.truncate((share * n as f64).round() as usize);
        rows.sort_unstable();
        rows
    };
    let train = match corruption {
        Corruption::OneSided { share } => {
            for i in pick(share, &mut rng) {
                y[i] += 5.0;
                corrupted[i] = true;
            }
            train.with_targets(y)?
        }
        Corruption::TwoSided { share } => {
            for i in pick(share, &mut rng) {
                y[i] += if rng.random_bool(0.5) { 5.0 } else { -5.0 };
                corrupted[i] = true;
            }
            train.with_targets(y)?
        }
        Corruption::HeavyTails => {
            for v in &mut y {
                *v += 0.5 * student_t2(&mut rng);
            }
            train.with_targets(y)?
        }
        Corruption::Flip { share } | Corruption::Minority { flip: share, .. } => {
            let classes = task.outputs().max(2);
            let (noisy, flipped) = flip_labels(&train, share, classes, seed.wrapping_add(400))?;
            corrupted = flipped;
            noisy
        }
    };
    Ok(Splits {
        train,
        meta,
        test,
        corrupted,
        true_features: Vec::new(),
        target_mean,
        target_sd,
    })
}

/// `data` (binary, labels 0/1) with its smaller class subsampled at random to `share` of the
/// rows.
fn minority(data: &Dataset, share: f64, seed: u64) -> Result<Dataset> {
    if !(share > 0.0 && share < 0.5) {
        return Err(Error::param(
            "minority share",
            format!("must lie in (0, 0.5), got {share}"),
        ));
    }
    let y = data.y();
    let ones: Vec<usize> = (0..y.len()).filter(|&i| y[i] == 1.0).collect();
    let zeros: Vec<usize> = (0..y.len()).filter(|&i| y[i] == 0.0).collect();
    let (mut small, large) = if ones.len() <= zeros.len() {
        (ones, zeros)
    } else {
        (zeros, ones)
    };
    let keep = ((share / (1.0 - share)) * large.len() as f64).round() as usize;
    if keep > small.len() {
        return Err(Error::invalid(format!(
            "the smaller class has {} rows, fewer than the {keep} a {share} share needs",
            small.len()
        )));
    }
    // Enough rows of each class for a stratified three-way split.
    if keep < 10 {
        return Err(Error::invalid(format!(
            "a {share} minority share of {} rows keeps {keep} rows of the smaller class; at \
             least 10 are needed",
            data.n_samples()
        )));
    }
    small.shuffle(&mut StdRng::seed_from_u64(seed));
    small.truncate(keep);
    let mut rows: Vec<usize> = large.into_iter().chain(small).collect();
    rows.sort_unstable();
    data.select(&rows)
}

/// One draw of Student's t with 2 degrees of freedom: `Z / √(V/2)` with `V ~ χ²₂ = −2 ln U`.
fn student_t2(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(1e-12..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
    let w: f64 = rng.random_range(1e-12..1.0);
    z / (-w.ln()).sqrt()
}
