//! From raw tables to the data sets a fit needs: feature choice by name, text columns one-hot
//! encoded (or dropped), missing values refused or their rows dropped, class labels of any
//! values, the meta hold-out, and the [`Encoding`] the fitted model keeps so that it reads
//! raw rows later. The command line, the experiment runner and the library share this path.
//!
//! ```
//! use metaadd::data::table::{Column, Table};
//! use metaadd::prepare::{Preparation, TaskKind};
//! use metaadd::FitParams;
//! let n = 120;
//! let x: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
//! let city: Vec<Option<String>> = (0..n).map(|i| Some(["Oslo", "Rome"][i % 2].to_string())).collect();
//! let label: Vec<Option<String>> = (0..n)
//!     .map(|i| Some(if x[i] + 0.3 * (i % 2) as f64 > 0.6 { "M" } else { "B" }.to_string()))
//!     .collect();
//! let table = Table::from_columns("rows", vec![
//!     ("x".into(), Column::Numbers(x)),
//!     ("city".into(), Column::Text(city)),
//!     ("diagnosis".into(), Column::Text(label)),
//! ])?;
//! let params = FitParams::default().iterations(20);
//! let prepared = Preparation::new("diagnosis", TaskKind::Binary)
//!     .meta_fraction(0.25)
//!     .prepare(&table, None, None, &params)?;
//! assert_eq!(prepared.encoding.feature_names(), vec!["x", "city=Oslo", "city=Rome"]);
//! let model = prepared.fit(&params)?.model;
//! let labels = model.predict_labels(&model.read_features(&table)?)?;
//! assert!(labels.iter().all(|l| l == "B" || l == "M"));
//! # Ok::<(), metaadd::Error>(())
//! ```

use crate::data::dataset::Dataset;
use crate::data::encoding::{Encoding, InputColumn, TargetEncoding};
use crate::data::labels::{ClassLabels, LabelOrder};
use crate::data::split::{balanced_holdout, hard_holdout, holdout};
use crate::data::table::{Column, Table};
use crate::error::{Error, Result};
use crate::hypergrad::Bilevel;
use crate::inner::Coefficients;
use crate::loss::Task;
use crate::params::{FitParams, Weighting};
use crate::trainer::{target_encoding, Fit, Trainer};
use crate::weightnet::WeightNet;
use std::fmt;
use std::str::FromStr;

/// What the target is, before its classes are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// A numeric target.
    Regression,
    /// Exactly two labels.
    Binary,
    /// Two or more labels.
    Multiclass,
}

impl FromStr for TaskKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "regression" => Ok(Self::Regression),
            "binary" => Ok(Self::Binary),
            "multiclass" => Ok(Self::Multiclass),
            other => Err(Error::param(
                "task",
                format!("unknown task `{other}`: expected regression, binary or multiclass"),
            )),
        }
    }
}

/// What happens to text (categorical) feature columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CategoricalPolicy {
    /// One 0/1 feature per level (levels sorted, stored in the model). The default.
    #[default]
    OneHot,
    /// Dropped, each named in a warning.
    Drop,
}

impl FromStr for CategoricalPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "one-hot" | "onehot" => Ok(Self::OneHot),
            "drop" => Ok(Self::Drop),
            other => Err(Error::param(
                "categorical",
                format!("unknown policy `{other}`: expected one-hot or drop"),
            )),
        }
    }
}

/// What happens to rows with a missing value in a column the fit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingPolicy {
    /// An error naming the first missing cell. The default.
    #[default]
    Error,
    /// The rows are dropped, counted in a warning.
    DropRows,
}

impl FromStr for MissingPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "error" => Ok(Self::Error),
            "drop-rows" => Ok(Self::DropRows),
            other => Err(Error::param(
                "missing",
                format!("unknown policy `{other}`: expected error or drop-rows"),
            )),
        }
    }
}

/// How held-out meta rows are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetaSelect {
    /// Random rows, stratified by class for classification. The default.
    #[default]
    Random,
    /// The correctly classified rows with the smallest margin under a uniform-weight fit
    /// (classification).
    Hard,
    /// Random rows, an equal number from every class (at most half of a class's rows):
    /// under class imbalance the meta set then shows the rare class as often as the common
    /// one (classification).
    Balanced,
}

impl FromStr for MetaSelect {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "random" => Ok(Self::Random),
            "hard" => Ok(Self::Hard),
            "balanced" => Ok(Self::Balanced),
            other => Err(Error::param(
                "meta_select",
                format!("unknown selection `{other}`: expected random, hard or balanced"),
            )),
        }
    }
}

impl fmt::Display for MetaSelect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Random => "random",
            Self::Hard => "hard",
            Self::Balanced => "balanced",
        })
    }
}

/// How raw tables become data sets. Build with [`Preparation::new`] and the setters, then
/// [`Preparation::prepare`].
#[derive(Debug, Clone, PartialEq)]
pub struct Preparation {
    /// The target column.
    pub target: String,
    /// What the target is.
    pub task: TaskKind,
    /// Feature columns by name; `None`: every column but the target.
    pub features: Option<Vec<String>>,
    /// Columns read as categorical even when they hold numbers (codes, years, zip codes).
    pub categorical: Vec<String>,
    /// What happens to text feature columns.
    pub categorical_policy: CategoricalPolicy,
    /// How class labels are numbered.
    pub label_order: LabelOrder,
    /// What happens to rows with missing values.
    pub missing: MissingPolicy,
    /// Share of the training rows held out as the meta set, when no meta table is given.
    pub meta_fraction: Option<f64>,
    /// How held-out meta rows are chosen.
    pub meta_select: MetaSelect,
}

impl Preparation {
    /// Defaults: every other column a feature, text columns one-hot encoded, labels sorted,
    /// missing values an error, no hold-out (a meta table must be given).
    pub fn new(target: impl Into<String>, task: TaskKind) -> Self {
        Self {
            target: target.into(),
            task,
            features: None,
            categorical: Vec::new(),
            categorical_policy: CategoricalPolicy::OneHot,
            label_order: LabelOrder::Sorted,
            missing: MissingPolicy::Error,
            meta_fraction: None,
            meta_select: MetaSelect::Random,
        }
    }

    /// Sets the feature columns.
    pub fn features(mut self, names: Vec<String>) -> Self {
        self.features = Some(names);
        self
    }

    /// Sets the columns read as categorical whatever they hold.
    pub fn categorical(mut self, names: Vec<String>) -> Self {
        self.categorical = names;
        self
    }

    /// Sets what happens to text feature columns.
    pub fn categorical_policy(mut self, policy: CategoricalPolicy) -> Self {
        self.categorical_policy = policy;
        self
    }

    /// Sets the order of class labels.
    pub fn label_order(mut self, order: LabelOrder) -> Self {
        self.label_order = order;
        self
    }

    /// Sets what happens to rows with missing values.
    pub fn missing(mut self, policy: MissingPolicy) -> Self {
        self.missing = policy;
        self
    }

    /// Holds out this share of the training rows as the meta set.
    pub fn meta_fraction(mut self, fraction: f64) -> Self {
        self.meta_fraction = Some(fraction);
        self
    }

    /// Sets how held-out meta rows are chosen.
    pub fn meta_select(mut self, select: MetaSelect) -> Self {
        self.meta_select = select;
        self
    }

    /// Prepares `train` (and a `meta` table, or a hold-out of `train`; and an optional `test`
    /// table read with the same encoding). `params` supplies the seed of the hold-out and the
    /// settings of the uniform-weight fit that a hard hold-out ranks rows by.
    pub fn prepare(
        &self,
        train: &Table,
        meta: Option<&Table>,
        test: Option<&Table>,
        params: &FitParams,
    ) -> Result<Prepared> {
        let mut warnings = Vec::new();
        let (columns, train, encoding, task) = self.encode(train, &mut warnings)?;
        let data = encoding.dataset(&train)?;
        let (train_data, meta_data, meta_source) = match (meta, self.meta_fraction) {
            (Some(_), Some(_)) => {
                return Err(Error::param(
                    "meta_fraction",
                    "give a meta table or a hold-out fraction, not both",
                ))
            }
            (Some(table), None) => {
                if self.meta_select != MetaSelect::Random {
                    return Err(Error::param(
                        "meta_select",
                        format!(
                            "a {} meta selection holds rows out of the training table; use it \
                             with a hold-out fraction",
                            self.meta_select
                        ),
                    ));
                }
                let table = self.complete_rows(table, &columns, &mut warnings)?;
                let meta = encoding.dataset(&table)?;
                (data, meta, table.source().display().to_string())
            }
            (None, Some(fraction)) => {
                let classification = task != Task::Regression;
                let (t, m) = match self.meta_select {
                    MetaSelect::Random => holdout(&data, fraction, classification, params.seed)?,
                    MetaSelect::Balanced => {
                        if !classification {
                            return Err(Error::param(
                                "meta_select",
                                "a balanced meta selection needs a classification task (classes)",
                            ));
                        }
                        balanced_holdout(&data, fraction, params.seed)?
                    }
                    MetaSelect::Hard => {
                        if !classification {
                            return Err(Error::param(
                                "meta_select",
                                "a hard meta selection needs a classification task (margins)",
                            ));
                        }
                        let uniform = FitParams {
                            task,
                            ..params.clone()
                        }
                        .weighting(Weighting::Uniform)
                        .fit_encoded(&data, &data, encoding.clone())?;
                        let margins = uniform.model.additive().margins(&data)?;
                        hard_holdout(&data, fraction, &margins)?
                    }
                };
                let source = format!(
                    "{fraction} of {} ({})",
                    train.source().display(),
                    self.meta_select
                );
                (t, m, source)
            }
            (None, None) => {
                return Err(Error::param(
                    "meta_fraction",
                    "needs a clean meta table or a hold-out fraction of the training rows",
                ))
            }
        };
        let test = test
            .map(|table| {
                let table = self.complete_rows(table, &columns, &mut warnings)?;
                encoding.dataset(&table)
            })
            .transpose()?;
        if meta_data.n_samples() < 2 {
            return Err(Error::invalid(format!(
                "meta set ({meta_source}): {} row(s); it needs at least 2",
                meta_data.n_samples()
            )));
        }
        Ok(Prepared {
            train: train_data,
            meta: meta_data,
            test,
            encoding,
            task,
            meta_source,
            warnings,
        })
    }

    /// One table as a data set in its own encoding (labels attached), with the warnings: for
    /// data split later, as the experiment runner splits a labelled table.
    pub fn dataset(&self, table: &Table) -> Result<(Dataset, Vec<String>)> {
        let mut warnings = Vec::new();
        let (_, table, encoding, _) = self.encode(table, &mut warnings)?;
        Ok((encoding.dataset(&table)?, warnings))
    }

    /// The used columns, the training table without dropped rows, its encoding and the task.
    fn encode(
        &self,
        train: &Table,
        warnings: &mut Vec<String>,
    ) -> Result<(Vec<String>, Table, Encoding, Task)> {
        if train.n_rows() == 0 {
            return Err(train.error("the table has no rows"));
        }
        let columns = self.used_columns(train)?;
        let train = self.complete_rows(train, &columns, warnings)?;
        let labels = self.labels(&train)?;
        let inputs = self.inputs(&train, &columns[1..], warnings)?;
        let task = match (&labels, self.task) {
            (None, _) => Task::Regression,
            (Some(_), TaskKind::Binary) => Task::Binary,
            (Some(l), _) => Task::Multiclass { classes: l.len() },
        };
        let target = match labels {
            Some(labels) => TargetEncoding::Classes(labels),
            None => TargetEncoding::Regression(None),
        };
        let encoding = Encoding::new(inputs, train.column_name(&self.target), target)?;
        Ok((columns, train, encoding, task))
    }

    /// The target and the feature columns (given or all others), checked against the table.
    fn used_columns(&self, table: &Table) -> Result<Vec<String>> {
        let target = table.column_name(&self.target);
        table.column(&target)?;
        let features: Vec<String> = match &self.features {
            Some(given) => {
                if given.is_empty() {
                    return Err(table.error("the list of feature columns is empty"));
                }
                let missing: Vec<&str> = given
                    .iter()
                    .map(|n| n.trim())
                    .filter(|n| table.column(n).is_err())
                    .collect();
                if !missing.is_empty() {
                    return Err(table.missing_columns(&missing));
                }
                let mut names: Vec<String> = Vec::with_capacity(given.len());
                for name in given.iter().map(|n| table.column_name(n)) {
                    if name == target {
                        return Err(table.error(format!(
                            "column `{name}` is the target and cannot also be a feature"
                        )));
                    }
                    if names.contains(&name) {
                        return Err(table.error(format!("feature column `{name}` is listed twice")));
                    }
                    names.push(name);
                }
                names
            }
            None => table
                .names()
                .iter()
                .filter(|n| **n != target)
                .cloned()
                .collect(),
        };
        if features.is_empty() {
            return Err(table.error(format!(
                "no column besides the target `{target}` to use as a feature"
            )));
        }
        if let Some(c) = self
            .categorical
            .iter()
            .find(|c| !features.iter().any(|f| f == c.trim()))
        {
            return Err(table.error(format!(
                "`{c}` is declared categorical but is not a feature column"
            )));
        }
        Ok(std::iter::once(target).chain(features).collect())
    }

    /// The table without rows missing a value in `columns`, or an error at the first such
    /// cell (see [`MissingPolicy`]).
    fn complete_rows(
        &self,
        table: &Table,
        columns: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Table> {
        let mut incomplete = Vec::new();
        for i in 0..table.n_rows() {
            for name in columns {
                if table.column(name)?.is_missing(i) {
                    if self.missing == MissingPolicy::Error {
                        return Err(table.cell_error(
                            i,
                            name,
                            "value is missing (to drop the rows with missing values: --missing \
                             drop-rows, or MissingPolicy::DropRows in the library)",
                        ));
                    }
                    incomplete.push(i);
                    break;
                }
            }
        }
        if incomplete.is_empty() {
            return Ok(table.clone());
        }
        let shown: Vec<String> = incomplete
            .iter()
            .take(5)
            .map(|&i| table.locate(i))
            .collect();
        warnings.push(format!(
            "{}: dropped {} row(s) with missing values ({}{})",
            table.source().display(),
            incomplete.len(),
            shown.join(", "),
            if incomplete.len() > 5 { ", …" } else { "" }
        ));
        let keep: Vec<usize> = (0..table.n_rows())
            .filter(|i| incomplete.binary_search(i).is_err())
            .collect();
        if keep.is_empty() {
            return Err(table.error("every row has a missing value"));
        }
        Ok(table.select_rows(&keep))
    }

    /// The class labels of a classification target (`None` for regression).
    fn labels(&self, table: &Table) -> Result<Option<ClassLabels>> {
        let name = table.column_name(&self.target);
        let column = table.column(&name)?;
        let labels = match (self.task, column) {
            (TaskKind::Regression, _) => {
                table.numbers(&name)?;
                return Ok(None);
            }
            (_, Column::Numbers(v)) => ClassLabels::from_numbers(v, self.label_order),
            (_, Column::Text(v)) => {
                let v: Vec<&str> = v.iter().map(|c| c.as_deref().unwrap_or("")).collect();
                ClassLabels::from_text(&v, self.label_order)
            }
        }
        .map_err(|e| table.label_error(e, &name))?;
        if self.task == TaskKind::Binary && labels.len() != 2 {
            return Err(table.error(format!(
                "column `{name}`: a binary target has two labels, found {}: {} (use --task \
                 multiclass)",
                labels.len(),
                labels.names().join(", ")
            )));
        }
        Ok(Some(labels))
    }

    /// The input columns: numeric ones kept unless constant, text (or declared categorical)
    /// ones one-hot encoded over their training levels or dropped; each drop is a warning.
    fn inputs(
        &self,
        table: &Table,
        features: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Vec<InputColumn>> {
        let source = table.source().display().to_string();
        let mut inputs = Vec::with_capacity(features.len());
        for name in features {
            let column = table.column(name)?;
            let declared = self.categorical.iter().any(|c| c.trim() == name);
            match column {
                Column::Numbers(v) if !declared => {
                    if let Some(i) = v.iter().position(|x| x.is_infinite()) {
                        return Err(table.cell_error(i, name, format!("{} is not finite", v[i])));
                    }
                    if v.iter().all(|x| *x == v[0]) {
                        warnings.push(format!(
                            "{source}: column `{name}` is constant (value {}); dropped",
                            v[0]
                        ));
                        continue;
                    }
                    inputs.push(InputColumn::Numeric(name.clone()));
                }
                _ => {
                    if !declared {
                        if let Column::Text(cells) = column {
                            mixed_column_check(table, name, cells)?;
                        }
                    }
                    if self.categorical_policy == CategoricalPolicy::Drop {
                        warnings.push(format!(
                            "{source}: column `{name}` is text; dropped (one-hot encode it with \
                             --categorical-features one-hot)"
                        ));
                        continue;
                    }
                    let mut levels: Vec<String> = (0..table.n_rows())
                        .filter_map(|i| column.cell_text(i))
                        .collect();
                    levels.sort();
                    levels.dedup();
                    if levels.len() < 2 {
                        warnings.push(format!(
                            "{source}: column `{name}` has a single level ({}); dropped",
                            levels.first().map_or("", String::as_str)
                        ));
                        continue;
                    }
                    inputs.push(InputColumn::Categorical {
                        name: name.clone(),
                        levels,
                    });
                }
            }
        }
        if inputs.is_empty() {
            let prefix = format!("{source}: ");
            let dropped: Vec<&str> = warnings
                .iter()
                .map(|w| w.strip_prefix(&prefix).unwrap_or(w))
                .collect();
            return Err(table.error(format!(
                "every feature column was dropped, so no feature is left: {}",
                dropped.join("; ")
            )));
        }
        Ok(inputs)
    }
}

/// A text column in which some cells are numbers is most likely a numeric column with a typo:
/// an error at its first cell that is not a number, unless the column is declared categorical.
fn mixed_column_check(table: &Table, name: &str, cells: &[Option<String>]) -> Result<()> {
    let number = cells
        .iter()
        .position(|c| c.as_deref().is_some_and(|t| t.parse::<f64>().is_ok()));
    let text = cells
        .iter()
        .position(|c| c.as_deref().is_some_and(|t| t.parse::<f64>().is_err()));
    if let (Some(number), Some(text)) = (number, text) {
        let cell = cells[text].as_deref().unwrap_or_default();
        return Err(table.cell_error(
            text,
            name,
            format!(
                "`{}` is not a number, but {} holds the number `{}`: the column mixes numbers \
                 and text; fix the cell, declare the column categorical \
                 (--categorical-columns {name}), or list the feature columns to leave it out",
                crate::data::csv::shorten(cell),
                table.locate(number),
                cells[number].as_deref().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Prepared data: training, meta and test sets in the encoding's features (regression
/// targets raw, class labels as indices with the labels attached), the encoding, the task
/// with its class count, and the warnings (dropped columns and rows).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Training rows.
    pub train: Dataset,
    /// Meta rows (given or held out).
    pub meta: Dataset,
    /// Test rows, if a test table was given.
    pub test: Option<Dataset>,
    /// Inputs and labels; a regression target's scale is chosen by the fit.
    pub encoding: Encoding,
    /// The task with its class count.
    pub task: Task,
    /// Where the meta set came from, for reports.
    pub meta_source: String,
    /// One line per dropped column or set of rows.
    pub warnings: Vec<String>,
}

impl Prepared {
    /// Fits `params` (its task replaced by the prepared one) on the prepared training and meta
    /// sets: the same model as [`FitParams::fit`] on the same rows, with the encoding kept.
    pub fn fit(&self, params: &FitParams) -> Result<Fit> {
        let params = self.params(params);
        params.fit_encoded(&self.train, &self.meta, self.full_encoding(&params)?)
    }

    /// `params` with the prepared task.
    pub fn params(&self, params: &FitParams) -> FitParams {
        FitParams {
            task: self.task,
            ..params.clone()
        }
    }

    /// The bilevel problem a fit with `params` (its task replaced by the prepared one) starts
    /// from, its starting coefficients and its weight net: what
    /// [`crate::hypergrad::hypergradient`] and [`crate::hypergrad::check_gradient`] take, as a
    /// fit's first outer iteration sees them.
    pub fn starting_point(&self, params: &FitParams) -> Result<(Bilevel, Coefficients, WeightNet)> {
        let params = self.params(params);
        let trainer = Trainer::with_encoding(
            &params,
            &self.train,
            &self.meta,
            self.full_encoding(&params)?,
        )?;
        Ok((
            trainer.bilevel(),
            trainer.coefficients().clone(),
            trainer.weightnet().clone(),
        ))
    }

    /// The encoding completed by the fit's choice of target scale.
    pub fn full_encoding(&self, params: &FitParams) -> Result<Encoding> {
        match self.encoding.target() {
            TargetEncoding::Regression(_) => Encoding::new(
                self.encoding.inputs().to_vec(),
                self.encoding.target_name(),
                target_encoding(&self.params(params), &self.train)?,
            ),
            TargetEncoding::Classes(_) => Ok(self.encoding.clone()),
        }
    }
}
