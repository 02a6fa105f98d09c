//! How raw columns become the numbers a model is fitted on, and back: the class labels of a
//! classification target, the scale of a regression target and the levels of one-hot encoded
//! text (categorical) columns. A fitted model keeps its [`Encoding`], so that it reads raw rows
//! and answers in the target's units or with the original labels.

use crate::data::dataset::Dataset;
use crate::data::labels::ClassLabels;
use crate::data::table::Table;
use crate::error::{Error, Result};

/// Standardisation of a regression target: the model is fitted to `(y − centre) / scale`, so
/// that the losses fed to the weight net, and λ, mean the same whatever the target's units.
///
/// [`TargetScale::robust`] (the library's choice) takes the median and 1.4826 × the median
/// absolute deviation of the training targets: gross outliers in them barely move it, and it
/// depends on the training rows alone, so that uniform and fixed weightings give the same model
/// whatever the meta set. [`TargetScale::fit`] takes the mean and standard deviation (the
/// paper's protocols standardise with the clean meta set's).
///
/// ```
/// use metaadd::data::encoding::TargetScale;
/// let scale = TargetScale::fit(&[1.0, 3.0])?;
/// assert_eq!((scale.mean(), scale.sd()), (2.0, 1.0));
/// assert_eq!(scale.encode(&[4.0]), vec![2.0]);
/// assert_eq!(scale.decode(&[2.0]), vec![4.0]);
/// let robust = TargetScale::robust(&[1.0, 2.0, 3.0, 1000.0])?; // the outlier barely counts
/// assert_eq!(robust.mean(), 2.5);
/// assert!(TargetScale::fit(&[5.0, 5.0]).is_err()); // constant target
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetScale {
    mean: f64,
    sd: f64,
}

/// 1 / Φ⁻¹(3/4): makes the median absolute deviation a consistent estimate of a normal
/// distribution's standard deviation.
const MAD_TO_SD: f64 = 1.482_602_218_505_602;

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

    /// Median and 1.4826 × median absolute deviation of `y`; when more than half the values
    /// tie (MAD = 0), the mean and standard deviation instead. A constant target is an error.
    pub fn robust(y: &[f64]) -> Result<Self> {
        if y.is_empty() {
            return Err(Error::invalid("cannot standardise an empty target"));
        }
        if let Some(v) = y.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "the target holds {v} (must be finite)"
            )));
        }
        let centre = median(y.to_vec());
        let mad = median(y.iter().map(|v| (v - centre).abs()).collect());
        if mad > 0.0 {
            Self::new(centre, MAD_TO_SD * mad)
        } else {
            Self::fit(y)
        }
    }

    /// A scale from stored numbers: `mean` finite, `sd` finite and positive.
    pub fn new(mean: f64, sd: f64) -> Result<Self> {
        if !(mean.is_finite() && sd.is_finite() && sd > 0.0) {
            return Err(Error::invalid(format!(
                "target standardisation needs a finite centre and a positive scale, got {mean} \
                 and {sd} (is the target constant?)"
            )));
        }
        Ok(Self { mean, sd })
    }

    /// The centre subtracted (stored as `target_mean`).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The scale divided by (stored as `target_sd`).
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// How the target is encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetEncoding {
    /// A regression target, standardised with the scale when there is one.
    Regression(Option<TargetScale>),
    /// A classification target with these labels.
    Classes(ClassLabels),
}

/// One raw input column of a model.
#[derive(Debug, Clone, PartialEq)]
pub enum InputColumn {
    /// A numeric column, one feature of the same name.
    Numeric(String),
    /// A text column, one-hot encoded: one 0/1 feature `name=level` per level.
    Categorical {
        /// The column's name.
        name: String,
        /// Its levels (sorted), one feature each.
        levels: Vec<String>,
    },
}

impl InputColumn {
    /// The column's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Numeric(name) | Self::Categorical { name, .. } => name,
        }
    }
}

/// The feature name of `level` of the categorical column `column`: `column=level`.
pub fn level_feature_name(column: &str, level: &str) -> String {
    format!("{column}={level}")
}

/// How a model reads raw rows: its input columns in order and its target's encoding.
///
/// ```
/// use metaadd::data::encoding::{Encoding, InputColumn, TargetEncoding};
/// use metaadd::data::table::{Column, Table};
/// let encoding = Encoding::new(
///     vec![
///         InputColumn::Numeric("age".into()),
///         InputColumn::Categorical { name: "city".into(), levels: vec!["Oslo".into(), "Rome".into()] },
///     ],
///     "price",
///     TargetEncoding::Regression(None),
/// )?;
/// assert_eq!(encoding.feature_names(), vec!["age", "city=Oslo", "city=Rome"]);
/// let table = Table::from_columns("rows", vec![
///     ("city".into(), Column::from_text(&["Rome", "Oslo"])),
///     ("age".into(), Column::Numbers(vec![30.0, 41.0])),
/// ])?;
/// let data = encoding.features(&table)?;
/// assert_eq!(data.x(), &[30.0, 0.0, 1.0, 41.0, 1.0, 0.0]);
/// let unknown = Table::from_columns("rows", vec![
///     ("city".into(), Column::from_text(&["Paris"])),
///     ("age".into(), Column::Numbers(vec![30.0])),
/// ])?;
/// assert!(encoding.features(&unknown).unwrap_err().to_string().contains("`Paris`"));
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    inputs: Vec<InputColumn>,
    target_name: String,
    target: TargetEncoding,
}

impl Encoding {
    /// Checks that input names are distinct and that categorical columns have distinct levels.
    pub fn new(
        inputs: Vec<InputColumn>,
        target_name: impl Into<String>,
        target: TargetEncoding,
    ) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        for input in &inputs {
            if !seen.insert(input.name()) {
                return Err(Error::invalid(format!(
                    "input column `{}` appears twice",
                    input.name()
                )));
            }
            if let InputColumn::Categorical { name, levels } = input {
                let mut distinct = std::collections::HashSet::new();
                if levels.is_empty() || !levels.iter().all(|l| distinct.insert(l)) {
                    return Err(Error::invalid(format!(
                        "categorical column `{name}` needs distinct levels, got {levels:?}"
                    )));
                }
            }
        }
        if inputs.is_empty() {
            return Err(Error::invalid("a model needs at least one input column"));
        }
        Ok(Self {
            inputs,
            target_name: target_name.into(),
            target,
        })
    }

    /// Numeric inputs named after the features of `data`, with `target`.
    pub fn numeric(data: &Dataset, target: TargetEncoding) -> Result<Self> {
        Self::new(
            data.feature_names()
                .iter()
                .map(|n| InputColumn::Numeric(n.clone()))
                .collect(),
            data.target_name(),
            target,
        )
    }

    /// The raw input columns, in order.
    pub fn inputs(&self) -> &[InputColumn] {
        &self.inputs
    }

    /// The target column's name.
    pub fn target_name(&self) -> &str {
        &self.target_name
    }

    /// The target's encoding.
    pub fn target(&self) -> &TargetEncoding {
        &self.target
    }

    /// The class labels of a classification target.
    pub fn classes(&self) -> Option<&ClassLabels> {
        match &self.target {
            TargetEncoding::Classes(labels) => Some(labels),
            TargetEncoding::Regression(_) => None,
        }
    }

    /// The regression target's scale, if it is standardised.
    pub fn target_scale(&self) -> Option<TargetScale> {
        match &self.target {
            TargetEncoding::Regression(scale) => *scale,
            TargetEncoding::Classes(_) => None,
        }
    }

    /// The model's feature names: numeric inputs as they are, one `name=level` per level of a
    /// categorical input.
    pub fn feature_names(&self) -> Vec<String> {
        self.inputs
            .iter()
            .flat_map(|input| match input {
                InputColumn::Numeric(name) => vec![name.clone()],
                InputColumn::Categorical { name, levels } => {
                    levels.iter().map(|l| level_feature_name(name, l)).collect()
                }
            })
            .collect()
    }

    /// The encoded targets of raw values: class indices for classification (numeric labels
    /// matched by value), standardised values for a standardised regression target.
    pub fn encode_target_values(&self, y: &[f64]) -> Result<Vec<f64>> {
        match &self.target {
            TargetEncoding::Regression(None) => Ok(y.to_vec()),
            TargetEncoding::Regression(Some(scale)) => Ok(scale.encode(y)),
            TargetEncoding::Classes(labels) => labels.encode_numbers(y),
        }
    }

    /// The encoded targets of a data set's rows: a data set that carries class labels has its
    /// indices mapped by label name onto this encoding's classes; otherwise its values are
    /// raw (see [`Encoding::encode_target_values`]).
    pub fn encode_targets(&self, data: &Dataset) -> Result<Vec<f64>> {
        match (data.classes(), &self.target) {
            (Some(own), TargetEncoding::Classes(labels)) => {
                if own == labels {
                    return Ok(data.y().to_vec());
                }
                let names = own.names();
                let rows: Vec<&str> = data
                    .y()
                    .iter()
                    .map(|&c| names[c as usize].as_str())
                    .collect();
                labels.encode_text(&rows)
            }
            (Some(_), TargetEncoding::Regression(_)) => Err(Error::invalid(
                "the data set holds class labels, the model is a regression model",
            )),
            (None, _) => self.encode_target_values(data.y()),
        }
    }

    /// The feature matrix of a table's rows: numeric inputs read by name (in any column
    /// order), categorical inputs one-hot encoded. A missing column, a missing or non-finite
    /// value, a text cell in a numeric input, or a level the model has not seen is an error
    /// naming the column and row. The target column, if present, is ignored (targets 0).
    pub fn features(&self, table: &Table) -> Result<Dataset> {
        let n = table.n_rows();
        let names = self.feature_names();
        let p = names.len();
        let mut x = vec![0.0; n * p];
        let mut offset = 0;
        for input in &self.inputs {
            let column = table.column(input.name())?;
            match input {
                InputColumn::Numeric(name) => {
                    let values = table.numbers(name)?;
                    for (i, &v) in values.iter().enumerate() {
                        if !v.is_finite() {
                            return Err(table.cell_error(
                                i,
                                name,
                                if v.is_nan() {
                                    "value is missing".to_string()
                                } else {
                                    format!("{v} is not finite")
                                },
                            ));
                        }
                        x[i * p + offset] = v;
                    }
                    offset += 1;
                }
                InputColumn::Categorical { name, levels } => {
                    let index: std::collections::HashMap<&str, usize> = levels
                        .iter()
                        .enumerate()
                        .map(|(k, l)| (l.as_str(), k))
                        .collect();
                    for i in 0..n {
                        let level = column.cell_text(i);
                        let Some(level) = level else {
                            return Err(table.cell_error(i, name, "value is missing"));
                        };
                        let Some(&k) = index.get(level.as_str()) else {
                            return Err(table.cell_error(
                                i,
                                name,
                                format!(
                                    "`{level}` is not a level the model was trained with ({})",
                                    shorten_list(levels)
                                ),
                            ));
                        };
                        x[i * p + offset + k] = 1.0;
                    }
                    offset += levels.len();
                }
            }
        }
        let data = Dataset::new(x, p, vec![0.0; n])?
            .with_feature_names(names)?
            .with_target_name(&self.target_name);
        match table.lines() {
            Some(lines) => data.with_lines(lines.to_vec()),
            None => Ok(data),
        }
    }

    /// [`Encoding::features`] with the targets of the table's target column, in raw units for
    /// regression and as class indices of this encoding's classes (with the labels attached)
    /// for classification.
    pub fn dataset(&self, table: &Table) -> Result<Dataset> {
        let features = self.features(table)?;
        let target = &self.target_name;
        match &self.target {
            TargetEncoding::Regression(_) => {
                let y = table.numbers(target)?;
                if let Some(i) = y.iter().position(|v| !v.is_finite()) {
                    return Err(table.cell_error(i, target, "the target value is missing"));
                }
                features.with_targets(y)
            }
            TargetEncoding::Classes(labels) => {
                let column = table.column(target)?;
                let texts: Vec<String> = (0..table.n_rows())
                    .map(|i| {
                        column
                            .cell_text(i)
                            .ok_or_else(|| table.cell_error(i, target, "the label is missing"))
                    })
                    .collect::<Result<_>>()?;
                let y = labels
                    .encode_text(&texts)
                    .map_err(|e| table.label_error(e, target))?;
                features.with_targets(y)?.with_classes(labels.clone())
            }
        }
    }
}

fn shorten_list(levels: &[String]) -> String {
    let shown: Vec<String> = levels.iter().take(10).map(|l| format!("`{l}`")).collect();
    if levels.len() > 10 {
        format!("{}, … {} levels", shown.join(", "), levels.len())
    } else {
        shown.join(", ")
    }
}
