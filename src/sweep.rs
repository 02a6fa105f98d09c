//! The unroll-depth study: every hypergradient mode at several depths K, side by side.
//!
//! Two measurements per (K, mode):
//! - **accuracy**: at fixed points of training — states `φ` of one reference training run, with
//!   `β` moved to the inner problem's fixed point `β*(φ)` — the mode's hypergradient against the
//!   implicit (K → ∞) one, of which the K-step hypergradient from `β*` is a partial sum;
//! - **outcome and cost**: a full training run with that mode, its final meta loss and test
//!   error, seconds per outer iteration, and the peak heap growth within an outer iteration
//!   (when a [`crate::memory::PeakAlloc`] is the global allocator).

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::evaluate::Scores;
use crate::hypergrad::{hypergradient, relative, HypergradMode, HypergradOptions};
use crate::inner::Coefficients;
use crate::memory;
use crate::model::MetaAdditiveModel;
use crate::ops::scalar;
use crate::params::FitParams;
use crate::shard::{check_division, Shard};
use crate::trainer::Trainer;
use crate::weightnet::{WeightNet, WeightNetParams};
use candle_core::DType;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to sweep. The base [`FitParams`] give everything but K and the mode.
///
/// ```
/// use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
/// use metaadd::sweep::SweepParams;
/// use metaadd::{FitParams, HypergradMode, Task};
/// let splits = RegressionProtocol::new(RegressionNoise::B).n(120).n_features(8).generate(0)?;
/// let base = FitParams::new(Task::Regression).iterations(10).ridge(0.01);
/// let rows = SweepParams::new(base)
///     .ks(vec![1, 5])
///     .modes(vec![HypergradMode::Exact, HypergradMode::Implicit])
///     .run(&splits.train, &splits.meta, &splits.test)?;
/// // exact at K = 1 and 5, and one row for implicit, which has no K.
/// assert_eq!(rows.len(), 3);
/// assert!(rows[1].relative_error < rows[0].relative_error);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SweepParams {
    /// Base settings; their `k` and `hypergradient` also define the reference run.
    pub fit: FitParams,
    /// Unroll depths.
    pub ks: Vec<usize>,
    /// Modes; `one-step` and `implicit` do not depend on K and get one row each, and
    /// `truncated(t)` is run only where `t ≤ K`.
    pub modes: Vec<HypergradMode>,
    /// States of the reference run at which accuracy is measured (evenly spaced, the last at
    /// its end).
    pub snapshots: usize,
    /// Only this shard's runs (see [`crate::shard`]); all when `None`.
    pub shard: Option<Shard>,
}

impl SweepParams {
    /// K ∈ {1, 2, 5, 10, 20, 50}; modes exact, exact-recompute, truncated(1), one-step and
    /// implicit; 3 snapshots.
    ///
    /// Every mode is measured against the implicit hypergradient, which needs the weights as
    /// they are (docs/design.md §7.8): unless `fit` says otherwise, weights are not normalised
    /// here, whatever the task.
    pub fn new(mut fit: FitParams) -> Self {
        fit.normalize_weights = Some(fit.normalize_weights.unwrap_or(false));
        Self {
            fit,
            ks: vec![1, 2, 5, 10, 20, 50],
            modes: vec![
                HypergradMode::Exact,
                HypergradMode::ExactRecompute,
                HypergradMode::Truncated(1),
                HypergradMode::OneStep,
                HypergradMode::Implicit,
            ],
            snapshots: 3,
            shard: None,
        }
    }

    /// Runs only `shard`'s share of [`SweepParams::runs`] (all when `None`).
    pub fn shard(mut self, shard: Option<Shard>) -> Self {
        self.shard = shard;
        self
    }

    /// Sets the unroll depths.
    pub fn ks(mut self, ks: Vec<usize>) -> Self {
        self.ks = ks;
        self
    }

    /// Sets the modes.
    pub fn modes(mut self, modes: Vec<HypergradMode>) -> Self {
        self.modes = modes;
        self
    }

    /// Sets the number of reference states.
    pub fn snapshots(mut self, snapshots: usize) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// The (K, mode) pairs run, in order: each mode over all K, K-free modes once.
    pub fn runs(&self) -> Vec<(Option<usize>, HypergradMode)> {
        let mut runs = Vec::new();
        for &mode in &self.modes {
            match mode {
                HypergradMode::OneStep | HypergradMode::Implicit => runs.push((None, mode)),
                HypergradMode::Truncated(t) => runs.extend(
                    self.ks
                        .iter()
                        .filter(|&&k| t <= k)
                        .map(|&k| (Some(k), mode)),
                ),
                _ => runs.extend(self.ks.iter().map(|&k| (Some(k), mode))),
            }
        }
        runs
    }

    /// Runs the study: `train` and `meta` as in [`FitParams::fit`], `test` for the test error
    /// (mean squared error for regression, error rate for classification).
    pub fn run(&self, train: &Dataset, meta: &Dataset, test: &Dataset) -> Result<Vec<SweepRow>> {
        self.run_with_progress(train, meta, test, |_, _| {})
    }

    /// [`SweepParams::run`], calling `progress(done, total)` after each training run.
    pub fn run_with_progress(
        &self,
        train: &Dataset,
        meta: &Dataset,
        test: &Dataset,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<SweepRow>> {
        if self.ks.is_empty() || self.ks.contains(&0) {
            return Err(Error::param(
                "ks",
                "give at least one unroll depth, each ≥ 1",
            ));
        }
        if self.modes.is_empty() {
            return Err(Error::param("modes", "give at least one mode"));
        }
        if self.snapshots == 0 {
            return Err(Error::param("snapshots", "must be at least 1"));
        }
        self.fit.validate()?;
        let runs: Vec<_> = self
            .runs()
            .into_iter()
            .enumerate()
            .filter(|(t, _)| self.shard.is_none_or(|shard| shard.owns(*t)))
            .map(|(_, run)| run)
            .collect();
        // A shard without runs has nothing to compare with the reference run either.
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let states = self.reference_states(train, meta)?;
        let mut rows = Vec::with_capacity(runs.len());
        for (done, &(k, mode)) in runs.iter().enumerate() {
            let params = self
                .fit
                .clone()
                .k(k.unwrap_or(self.fit.k))
                .hypergradient(mode);
            let (relative_error, cosine) = accuracy(&states, &params)?;
            let outcome = train_and_measure(&params, train, meta, test)?;
            rows.push(SweepRow {
                k,
                mode,
                relative_error,
                cosine,
                meta_loss: outcome.meta_loss,
                test_error: outcome.test_error,
                seconds_per_iteration: outcome.seconds_per_iteration,
                peak_bytes: outcome.peak_bytes,
            });
            progress(done + 1, runs.len());
            crate::progress::report(crate::progress::Progress::Step {
                done: done + 1,
                total: runs.len(),
            })?;
        }
        Ok(rows)
    }

    /// The reference run's states, with `β` at the inner fixed point, and their implicit
    /// hypergradients.
    fn reference_states(&self, train: &Dataset, meta: &Dataset) -> Result<Vec<State>> {
        let mut trainer = Trainer::new(&self.fit, train, meta)?;
        let n = self.fit.iterations;
        let at: Vec<usize> = (1..=self.snapshots)
            .map(|i| (i * n).div_ceil(self.snapshots))
            .collect();
        let mut states = Vec::with_capacity(at.len());
        let implicit = HypergradOptions::new(1)
            .detach_weight_input(self.fit.detach_weight_input)
            .mode(HypergradMode::Implicit);
        for &iteration in &at {
            while trainer.iterations_done() < iteration {
                let metrics = trainer.step()?;
                metrics.report(metrics.iteration + 1, n)?;
            }
            let problem = trainer.bilevel();
            let start = problem
                .solve(
                    trainer.coefficients(),
                    trainer.weightnet(),
                    implicit.implicit.max_inner_steps,
                    implicit.implicit.inner_tolerance,
                )?
                .coefficients;
            // A copy (see `WeightNet`'s `Clone`): the trainer's optimiser steps its parameters.
            let net = trainer.weightnet().clone();
            let reference = flatten(&hypergradient(&problem, &start, &net, implicit)?.grads)?;
            states.push(State {
                problem,
                start,
                net,
                reference,
            });
        }
        Ok(states)
    }
}

/// One (K, mode) of the study.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    /// Unroll depth; `None` for modes that have none (one-step, implicit).
    pub k: Option<usize>,
    /// The mode.
    pub mode: HypergradMode,
    /// `‖g − g_implicit‖ / ‖g_implicit‖`, averaged over the reference states.
    pub relative_error: f64,
    /// Cosine between `g` and `g_implicit`, averaged over the reference states.
    pub cosine: f64,
    /// Meta loss at the final coefficients of this mode's training run.
    pub meta_loss: f64,
    /// Test mean squared error (regression) or error rate (classification).
    pub test_error: f64,
    /// Wall-clock seconds per outer iteration.
    pub seconds_per_iteration: f64,
    /// Largest heap growth within one outer iteration, in bytes; `None` without
    /// [`crate::memory::PeakAlloc`].
    pub peak_bytes: Option<usize>,
}

struct State {
    problem: crate::hypergrad::Bilevel,
    start: Coefficients,
    net: WeightNet,
    reference: Vec<f64>,
}

/// Mean relative error and cosine of `params`' hypergradient against the references.
fn accuracy(states: &[State], params: &FitParams) -> Result<(f64, f64)> {
    let opts = params.hypergrad_options();
    let (mut error, mut cosine) = (0.0, 0.0);
    for s in states {
        let g = flatten(&hypergradient(&s.problem, &s.start, &s.net, opts)?.grads)?;
        let dot: f64 = g.iter().zip(&s.reference).map(|(a, b)| a * b).sum();
        let squared = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
        let diff: Vec<f64> = g.iter().zip(&s.reference).map(|(a, b)| a - b).collect();
        let (ng, nr) = (squared(&g).sqrt(), squared(&s.reference).sqrt());
        error += relative(squared(&diff), nr * nr);
        cosine += if ng > 0.0 && nr > 0.0 {
            dot / (ng * nr)
        } else {
            f64::NAN
        };
    }
    let n = states.len() as f64;
    Ok((error / n, cosine / n))
}

struct Outcome {
    meta_loss: f64,
    test_error: f64,
    seconds_per_iteration: f64,
    peak_bytes: Option<usize>,
}

fn train_and_measure(
    params: &FitParams,
    train: &Dataset,
    meta: &Dataset,
    test: &Dataset,
) -> Result<Outcome> {
    let mut trainer = Trainer::new(params, train, meta)?;
    let mut seconds = 0.0;
    let mut peak = 0usize;
    for _ in 0..params.iterations {
        memory::reset_peak();
        let before = memory::current_bytes();
        let start = Instant::now();
        let metrics = trainer.step()?;
        seconds += start.elapsed().as_secs_f64();
        peak = peak.max(memory::peak_bytes().saturating_sub(before));
        metrics.report(metrics.iteration + 1, params.iterations)?;
    }
    let meta_loss = scalar(&trainer.bilevel().meta.mean_loss(trainer.coefficients())?)?;
    let model = trainer.into_model()?;
    Ok(Outcome {
        meta_loss,
        test_error: test_error(&model, test)?,
        seconds_per_iteration: seconds / params.iterations.max(1) as f64,
        peak_bytes: memory::is_installed().then_some(peak),
    })
}

/// Mean squared error in the target's units (regression) or error rate (classification) on
/// `test`.
fn test_error(model: &MetaAdditiveModel, test: &Dataset) -> Result<f64> {
    Ok(match model.evaluate(test)? {
        Scores::Regression(s) => s.mse,
        Scores::Classification(s) => 1.0 - s.accuracy,
    })
}

fn flatten(ts: &WeightNetParams) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for t in ts {
        out.extend(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// The columns of a sweep's CSV file.
const COLUMNS: [&str; 8] = [
    "mode",
    "k",
    "relative_error",
    "cosine",
    "meta_loss",
    "test_error",
    "seconds_per_iteration",
    "peak_bytes",
];

/// Writes `rows` as CSV to `path` (a mode without a K, and a peak not measured, leave their
/// cells empty), whole or not at all.
pub fn write_rows(path: &Path, rows: &[SweepRow]) -> Result<()> {
    let headers: Vec<String> = COLUMNS.map(String::from).to_vec();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.mode.to_string(),
                r.k.map_or(String::new(), |k| k.to_string()),
                format!("{:e}", r.relative_error),
                format!("{}", r.cosine),
                format!("{:e}", r.meta_loss),
                format!("{:e}", r.test_error),
                format!("{:e}", r.seconds_per_iteration),
                r.peak_bytes.map_or(String::new(), |b| b.to_string()),
            ]
        })
        .collect();
    crate::data::csv::write_csv(path, &headers, &body)
}

/// The rows of a CSV file [`write_rows`] wrote.
pub fn read_rows(path: &Path) -> Result<Vec<SweepRow>> {
    let bad = |line: usize, what: String| Error::Data {
        path: path.to_path_buf(),
        reason: format!("line {line}: {what}"),
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let header = reader.headers().map_err(|e| bad(1, e.to_string()))?;
    if header.iter().collect::<Vec<_>>() != COLUMNS {
        return Err(bad(
            1,
            format!("not a sweep's columns ({})", COLUMNS.join(",")),
        ));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| bad(line, e.to_string()))?;
        let cell = |j: usize| record.get(j).unwrap_or_default();
        let number = |j: usize| -> Result<f64> {
            cell(j).parse().map_err(|_| {
                bad(
                    line,
                    format!("{} `{}` is not a number", COLUMNS[j], cell(j)),
                )
            })
        };
        let whole = |j: usize| -> Result<Option<usize>> {
            match cell(j) {
                "" => Ok(None),
                v => v
                    .parse()
                    .map(Some)
                    .map_err(|_| bad(line, format!("{} `{v}` is not a whole number", COLUMNS[j]))),
            }
        };
        rows.push(SweepRow {
            mode: cell(0)
                .parse()
                .map_err(|e: Error| bad(line, e.to_string()))?,
            k: whole(1)?,
            relative_error: number(2)?,
            cosine: number(3)?,
            meta_loss: number(4)?,
            test_error: number(5)?,
            seconds_per_iteration: number(6)?,
            peak_bytes: whole(7)?,
        });
    }
    Ok(rows)
}

impl SweepParams {
    /// What a shard's file must share with the others to be merged: the runs, the
    /// snapshots and every fit setting, with `data` (the caller's words for the data).
    pub fn description(&self, data: &str) -> String {
        let settings: Vec<String> = crate::params::SETTINGS
            .iter()
            .map(|s| format!("{} {}", s.key, (s.get)(&self.fit)))
            .collect();
        let runs: Vec<String> = self
            .runs()
            .iter()
            .map(|(k, mode)| format!("{mode}@{}", k.map_or("-".into(), |k| k.to_string())))
            .collect();
        format!(
            "{data}; runs [{}]; snapshots {}; {}",
            runs.join(", "),
            self.snapshots,
            settings.join("; ")
        )
    }

    /// Writes this shard's `rows` to its file beside `path` ([`Shard::path`]) with the
    /// description ([`SweepParams::description`] of `data`) in a JSON file beside that;
    /// returns the rows file's path.
    pub fn write_shard(&self, path: &Path, data: &str, rows: &[SweepRow]) -> Result<PathBuf> {
        let shard = self
            .shard
            .ok_or_else(|| Error::invalid("write_shard: the sweep has no shard"))?;
        let file = shard.path(path);
        let about = serde_json::json!({
            "metaadd_sweep": self.description(data),
            "shard": shard.to_string(),
        });
        crate::output::write_bytes(
            &file.with_extension("json"),
            format!("{about:#}\n").as_bytes(),
        )?;
        write_rows(&file, rows)?;
        Ok(file)
    }

    /// The rows of the whole study from its shards' files (written by
    /// [`SweepParams::write_shard`] with the same settings and `data`), in the order one run
    /// gives them; every shard of one division must be there and every run in one of them.
    pub fn merge(&self, files: &[PathBuf], data: &str) -> Result<Vec<SweepRow>> {
        let description = self.description(data);
        let mut found: Vec<(Shard, &PathBuf, Vec<SweepRow>)> = Vec::new();
        for file in files {
            let sidecar = file.with_extension("json");
            let text = std::fs::read_to_string(&sidecar).map_err(|source| Error::Io {
                path: sidecar.clone(),
                source,
            })?;
            let about: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Data {
                    path: sidecar.clone(),
                    reason: e.to_string(),
                })?;
            if about["metaadd_sweep"].as_str() != Some(description.as_str()) {
                return Err(Error::invalid(format!(
                    "{}: not a shard of this sweep (the flags differ from the shards'):\n  \
                     file ({}): {}\n  now: {description}",
                    file.display(),
                    sidecar.display(),
                    about["metaadd_sweep"].as_str().unwrap_or("(none)")
                )));
            }
            let shard: Shard = about["shard"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .map_err(|e: Error| Error::Data {
                    path: sidecar.clone(),
                    reason: e.to_string(),
                })?;
            found.push((shard, file, read_rows(file)?));
        }
        let shards: Vec<(Shard, &Path)> = found.iter().map(|(s, p, _)| (*s, p.as_path())).collect();
        check_division(&shards)?;
        self.runs()
            .into_iter()
            .map(|(k, mode)| {
                found
                    .iter()
                    .find_map(|(_, _, rows)| rows.iter().find(|r| r.k == k && r.mode == mode))
                    .cloned()
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "the run {mode} at K = {} is in no shard's file",
                            k.map_or("-".into(), |k| k.to_string())
                        ))
                    })
            })
            .collect()
    }
}
