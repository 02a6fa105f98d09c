//! Class labels of a classification target: numbers or text, in a chosen order.

use crate::error::{Error, Result};

/// The order in which class labels are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelOrder {
    /// Sorted: numbers by value, text alphabetically (byte order). The default, as in
    /// scikit-learn: a 0/1 target keeps 0 as class 0 whatever row comes first.
    #[default]
    Sorted,
    /// In the order the labels first appear in the training rows.
    FirstAppearance,
}

impl std::str::FromStr for LabelOrder {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "sorted" => Ok(Self::Sorted),
            "first-appearance" | "first" => Ok(Self::FirstAppearance),
            other => Err(Error::param(
                "label_order",
                format!("unknown label order `{other}`: expected sorted or first-appearance"),
            )),
        }
    }
}

/// The original label values of a classification target in class-index order: numbers (any
/// distinct values, e.g. `-1, 1` or `1, 2, 3`) or text (e.g. `B`, `M`).
///
/// ```
/// use metaadd::data::labels::{ClassLabels, LabelOrder};
/// let labels = ClassLabels::from_numbers(&[3.0, 1.0, 2.0, 1.0], LabelOrder::Sorted)?;
/// assert_eq!(labels.names(), vec!["1", "2", "3"]);
/// assert_eq!(labels.encode_numbers(&[2.0, 3.0])?, vec![1.0, 2.0]);
/// let text = ClassLabels::from_text(&["M", "B", "M"], LabelOrder::FirstAppearance)?;
/// assert_eq!(text.names(), vec!["M", "B"]);
/// assert!(text.encode_text(&["X"]).is_err()); // not a class of the model
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabels {
    /// Numeric labels.
    Numbers(Vec<f64>),
    /// Text labels.
    Text(Vec<String>),
}

impl ClassLabels {
    /// The distinct values of `y` in `order`; at least two.
    pub fn from_numbers(y: &[f64], order: LabelOrder) -> Result<Self> {
        let mut values: Vec<f64> = Vec::new();
        for (i, &v) in y.iter().enumerate() {
            if !v.is_finite() {
                return Err(Error::Label {
                    row: Some(i),
                    reason: format!("label {v} is not a finite number"),
                });
            }
            // Labels are compared as numbers: -0 and 0 are one label.
            let v = if v == 0.0 { 0.0 } else { v };
            if !values.contains(&v) {
                values.push(v);
            }
        }
        if order == LabelOrder::Sorted {
            values.sort_by(f64::total_cmp);
        }
        Self::numbers(values)
    }

    /// The distinct values of `y` in `order`; at least two.
    pub fn from_text<S: AsRef<str>>(y: &[S], order: LabelOrder) -> Result<Self> {
        let mut values: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for v in y {
            if seen.insert(v.as_ref()) {
                values.push(v.as_ref().to_string());
            }
        }
        if order == LabelOrder::Sorted {
            values.sort();
        }
        Self::text(values)
    }

    /// Stored numeric labels in class order: distinct, finite, at least two.
    pub fn numbers(values: Vec<f64>) -> Result<Self> {
        for (i, v) in values.iter().enumerate() {
            if !v.is_finite() || values[..i].contains(v) {
                return Err(Error::invalid(format!(
                    "class labels must be distinct finite values, got {values:?}"
                )));
            }
        }
        check_count(values.len(), || format!("{values:?}"))?;
        Ok(Self::Numbers(values))
    }

    /// Stored text labels in class order: distinct, at least two.
    pub fn text(values: Vec<String>) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = values.iter().find(|v| !seen.insert(v.as_str())) {
            return Err(Error::invalid(format!(
                "class labels must be distinct, `{twice}` appears twice"
            )));
        }
        check_count(values.len(), || format!("{values:?}"))?;
        Ok(Self::Text(values))
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        match self {
            Self::Numbers(v) => v.len(),
            Self::Text(v) => v.len(),
        }
    }

    /// Always false: there are at least two classes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels as text, class 0 first (numbers in Rust's shortest round-trip form: `1`,
    /// `-0.5`).
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::Numbers(v) => v.iter().map(f64::to_string).collect(),
            Self::Text(v) => v.clone(),
        }
    }

    /// The label of class `class` as text.
    pub fn name(&self, class: usize) -> Option<String> {
        match self {
            Self::Numbers(v) => v.get(class).map(f64::to_string),
            Self::Text(v) => v.get(class).cloned(),
        }
    }

    /// The numeric labels, if the labels are numbers.
    pub fn as_numbers(&self) -> Option<&[f64]> {
        match self {
            Self::Numbers(v) => Some(v),
            Self::Text(_) => None,
        }
    }

    /// Class indices (as `f64`) of numeric labels; a value that is no class is an error naming
    /// its row.
    pub fn encode_numbers(&self, y: &[f64]) -> Result<Vec<f64>> {
        let Self::Numbers(values) = self else {
            return Err(Error::Label {
                row: None,
                reason: format!(
                    "the model's labels are text ({}); numeric targets cannot be matched to them",
                    self.listed()
                ),
            });
        };
        y.iter()
            .enumerate()
            .map(|(i, v)| {
                values
                    .iter()
                    .position(|l| l == v)
                    .map(|c| c as f64)
                    .ok_or_else(|| Error::Label {
                        row: Some(i),
                        reason: format!("label {v} is not one of the classes {}", self.listed()),
                    })
            })
            .collect()
    }

    /// Class indices (as `f64`) of labels given as text: the text of a number matches a
    /// numeric label of the same value (`1.0` matches `1`).
    pub fn encode_text<S: AsRef<str>>(&self, y: &[S]) -> Result<Vec<f64>> {
        let names = self.names();
        y.iter()
            .enumerate()
            .map(|(i, v)| {
                let v = v.as_ref().trim();
                let found = match self {
                    Self::Text(values) => values.iter().position(|l| l == v),
                    Self::Numbers(values) => v
                        .parse::<f64>()
                        .ok()
                        .and_then(|x| values.iter().position(|l| *l == x)),
                };
                found.map(|c| c as f64).ok_or_else(|| Error::Label {
                    row: Some(i),
                    reason: format!("label `{v}` is not one of the classes {}", names.join(", ")),
                })
            })
            .collect()
    }

    /// The labels as a JSON list (numbers or strings), as stored in model files.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Numbers(v) => serde_json::Value::from(v.clone()),
            Self::Text(v) => serde_json::Value::from(v.clone()),
        }
    }

    /// Reads [`ClassLabels::to_json`]'s list.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let list = value
            .as_array()
            .ok_or_else(|| Error::invalid("class labels must be a JSON list"))?;
        if list.iter().all(serde_json::Value::is_number) {
            Self::numbers(list.iter().filter_map(serde_json::Value::as_f64).collect())
        } else if list.iter().all(serde_json::Value::is_string) {
            Self::text(
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            )
        } else {
            Err(Error::invalid(
                "class labels must be all numbers or all strings",
            ))
        }
    }

    fn listed(&self) -> String {
        let names = self.names();
        if names.len() <= 10 {
            names.join(", ")
        } else {
            format!("{}, … ({} classes)", names[..10].join(", "), names.len())
        }
    }
}

fn check_count(n: usize, shown: impl Fn() -> String) -> Result<()> {
    if n < 2 {
        return Err(Error::Label {
            row: None,
            reason: format!(
                "a classification target needs two distinct labels, found {}",
                shown()
            ),
        });
    }
    Ok(())
}
