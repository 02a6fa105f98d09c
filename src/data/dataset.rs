//! [`Dataset`]: numeric features with one target value per row.

use crate::data::labels::ClassLabels;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};

/// A feature matrix `x` (`n × p`, row-major) with one target value per row.
///
/// For classification the target holds class indices `0, 1, …, C−1` stored as `f64`.
///
/// ```
/// use metaadd::Dataset;
/// let data = Dataset::new(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 2, vec![1.0, 0.0, 1.0])?
///     .with_feature_names(vec!["age".into(), "dose".into()])?;
/// assert_eq!((data.n_samples(), data.n_features()), (3, 2));
/// assert_eq!(data.row(1), &[2.0, 3.0]);
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    x: Vec<f64>,
    n_features: usize,
    y: Vec<f64>,
    feature_names: Vec<String>,
    target_name: String,
    /// When set, `y` holds class indices into these labels.
    classes: Option<ClassLabels>,
    /// The 1-based line of each row in the CSV file it was read from (the header is line 1),
    /// when it came from one; kept through row and column selections.
    lines: Option<Vec<usize>>,
}

impl Dataset {
    /// Builds a data set from row-major features (`y.len()` rows of `n_features` values).
    ///
    /// Refuses a size mismatch and any NaN or infinite value, naming its row and column.
    pub fn new(x: Vec<f64>, n_features: usize, y: Vec<f64>) -> Result<Self> {
        if n_features == 0 {
            return Err(Error::invalid(
                "a data set needs at least one feature column",
            ));
        }
        if x.len() != y.len() * n_features {
            return Err(Error::invalid(format!(
                "feature matrix has {} values, expected {} rows × {} features = {}",
                x.len(),
                y.len(),
                n_features,
                y.len() * n_features
            )));
        }
        if let Some(k) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "feature value at row {}, column {} is {} (must be finite)",
                k / n_features,
                k % n_features,
                x[k]
            )));
        }
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "target at row {i} is {} (must be finite)",
                y[i]
            )));
        }
        let feature_names = (0..n_features).map(|j| format!("x{j}")).collect();
        Ok(Self {
            x,
            n_features,
            y,
            feature_names,
            target_name: "y".to_string(),
            classes: None,
            lines: None,
        })
    }

    /// Builds a data set from tensors `x` of shape `[n, p]` and `y` of shape `[n]`, any float
    /// dtype and device.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// let x = Tensor::new(&[[0.5f32, 1.0], [1.5, 2.0]], &Device::Cpu)?;
    /// let y = Tensor::new(&[1.0f32, 2.0], &Device::Cpu)?;
    /// let data = metaadd::Dataset::from_tensors(&x, &y)?;
    /// assert_eq!(data.column(1), vec![1.0, 2.0]);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn from_tensors(x: &Tensor, y: &Tensor) -> Result<Self> {
        let (n, p) = x.dims2().map_err(|_| {
            Error::invalid(format!(
                "features must have shape [n, p], got {:?}",
                x.dims()
            ))
        })?;
        let y = match y.dims() {
            [m] if *m == n => y.clone(),
            [m, 1] if *m == n => y.flatten_all()?,
            d => {
                return Err(Error::invalid(format!(
                    "target must have shape [{n}] to match {n} feature rows, got {d:?}"
                )))
            }
        };
        let x = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let y = y.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        Self::new(x, p, y)
    }

    /// Names the feature columns (default `x0, x1, …`). Names must be distinct.
    pub fn with_feature_names(mut self, names: Vec<String>) -> Result<Self> {
        if names.len() != self.n_features {
            return Err(Error::invalid(format!(
                "{} feature names given for {} feature columns",
                names.len(),
                self.n_features
            )));
        }
        for (j, name) in names.iter().enumerate() {
            if names[..j].contains(name) {
                return Err(Error::invalid(format!(
                    "feature name `{name}` appears twice"
                )));
            }
        }
        self.feature_names = names;
        Ok(self)
    }

    /// Names the target (default `y`).
    pub fn with_target_name(mut self, name: impl Into<String>) -> Self {
        self.target_name = name.into();
        self
    }

    /// Number of rows.
    pub fn n_samples(&self) -> usize {
        self.y.len()
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Row-major features, `n_samples × n_features`.
    pub fn x(&self) -> &[f64] {
        &self.x
    }

    /// Targets, one per row.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// Features of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.n_features..(i + 1) * self.n_features]
    }

    /// Values of feature column `j`, one per row.
    pub fn column(&self, j: usize) -> Vec<f64> {
        self.x
            .iter()
            .skip(j)
            .step_by(self.n_features)
            .copied()
            .collect()
    }

    /// Feature names in column order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The target's name.
    pub fn target_name(&self) -> &str {
        &self.target_name
    }

    /// The rows at `indices`, in that order (names kept).
    ///
    /// ```
    /// let data = metaadd::Dataset::new(vec![1.0, 2.0, 3.0], 1, vec![10.0, 20.0, 30.0])?;
    /// assert_eq!(data.select(&[2, 0])?.y(), &[30.0, 10.0]);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let n = self.n_samples();
        let mut x = Vec::with_capacity(indices.len() * self.n_features);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= n {
                return Err(Error::invalid(format!(
                    "row index {i} out of range for {n} rows"
                )));
            }
            x.extend_from_slice(self.row(i));
            y.push(self.y[i]);
        }
        Ok(Self {
            x,
            n_features: self.n_features,
            y,
            feature_names: self.feature_names.clone(),
            target_name: self.target_name.clone(),
            classes: self.classes.clone(),
            lines: self
                .lines
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
        })
    }

    /// The CSV file line of each row (1-based, the header is line 1), for rows read from a
    /// file ([`crate::prepare`] and a model's `read_labelled` keep them).
    pub fn lines(&self) -> Option<&[usize]> {
        self.lines.as_deref()
    }

    /// Records the CSV file line of each row (one per row).
    ///
    /// ```
    /// let data = metaadd::Dataset::new(vec![1.0, 2.0], 1, vec![0.0, 1.0])?.with_lines(vec![2, 5])?;
    /// assert_eq!(data.select(&[1])?.lines(), Some(&[5][..]));
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn with_lines(mut self, lines: Vec<usize>) -> Result<Self> {
        if lines.len() != self.n_samples() {
            return Err(Error::invalid(format!(
                "{} line numbers given for {} rows",
                lines.len(),
                self.n_samples()
            )));
        }
        self.lines = Some(lines);
        Ok(self)
    }

    /// The feature columns at `columns`, in that order (names, targets and classes kept).
    ///
    /// ```
    /// let data = metaadd::Dataset::new(vec![1.0, 2.0, 3.0, 4.0], 2, vec![0.0, 1.0])?;
    /// let second = data.select_features(&[1])?;
    /// assert_eq!((second.x(), second.feature_names()), (&[2.0, 4.0][..], &["x1".to_string()][..]));
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn select_features(&self, columns: &[usize]) -> Result<Self> {
        if let Some(&j) = columns.iter().find(|&&j| j >= self.n_features) {
            return Err(Error::invalid(format!(
                "feature index {j} out of range for {} features",
                self.n_features
            )));
        }
        let x = (0..self.n_samples())
            .flat_map(|i| {
                columns
                    .iter()
                    .map(move |&j| self.x[i * self.n_features + j])
            })
            .collect();
        Ok(Self {
            x,
            n_features: columns.len(),
            y: self.y.clone(),
            feature_names: columns
                .iter()
                .map(|&j| self.feature_names[j].clone())
                .collect(),
            target_name: self.target_name.clone(),
            classes: self.classes.clone(),
            lines: self.lines.clone(),
        })
    }

    /// A copy with the targets replaced (same number of rows).
    pub fn with_targets(&self, y: Vec<f64>) -> Result<Self> {
        if y.len() != self.n_samples() {
            return Err(Error::invalid(format!(
                "{} targets given for {} rows",
                y.len(),
                self.n_samples()
            )));
        }
        let mut out = Self::new(self.x.clone(), self.n_features, y)?;
        out.feature_names = self.feature_names.clone();
        out.target_name = self.target_name.clone();
        out.lines = self.lines.clone();
        match &self.classes {
            // New targets must still index the labels.
            Some(labels) => out.with_classes(labels.clone()),
            None => Ok(out),
        }
    }

    /// Marks the targets as class indices into `labels` (as [`crate::prepare`] makes them);
    /// every target must be an index below the number of labels.
    ///
    /// ```
    /// use metaadd::data::labels::ClassLabels;
    /// let labels = ClassLabels::text(vec!["B".into(), "M".into()])?;
    /// let data = metaadd::Dataset::new(vec![1.0, 2.0], 1, vec![1.0, 0.0])?.with_classes(labels)?;
    /// assert_eq!(data.target_labels()?, vec!["M", "B"]);
    /// # Ok::<(), metaadd::Error>(())
    /// ```
    pub fn with_classes(mut self, labels: ClassLabels) -> Result<Self> {
        let k = labels.len();
        if let Some(i) = self
            .y
            .iter()
            .position(|&c| !(c.fract() == 0.0 && c >= 0.0 && (c as usize) < k))
        {
            return Err(Error::Label {
                row: Some(i),
                reason: format!("{} is not a class index below {k}", self.y[i]),
            });
        }
        self.classes = Some(labels);
        Ok(self)
    }

    /// The class labels the targets index, when the data set was built with them.
    pub fn classes(&self) -> Option<&ClassLabels> {
        self.classes.as_ref()
    }

    /// The targets as label text: the labels of the class indices when the data set carries
    /// labels, else the values themselves (shortest round-trip form).
    pub fn target_labels(&self) -> Result<Vec<String>> {
        Ok(match &self.classes {
            Some(labels) => self
                .y
                .iter()
                .map(|&c| labels.name(c as usize).unwrap_or_default())
                .collect(),
            None => self.y.iter().map(f64::to_string).collect(),
        })
    }
}
