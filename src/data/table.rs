//! A table of named columns, numeric or text, as read from a CSV file or given in memory: the
//! raw input of [`crate::prepare`] and of a fitted model's row-level methods.
//!
//! A CSV column is numeric when every cell that is not missing parses as a number, text
//! otherwise. Missing cells are empty or read `NA`, `N/A`, `null` or `NaN` (any case); in a
//! numeric column they are NaN, in a text column `None`.

use crate::data::csv::{backticked, shorten, CsvTable};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers; NaN marks a missing value.
    Numbers(Vec<f64>),
    /// Text; `None` marks a missing value.
    Text(Vec<Option<String>>),
}

impl Column {
    /// A text column with every value present.
    pub fn from_text<S: AsRef<str>>(values: &[S]) -> Self {
        Column::Text(
            values
                .iter()
                .map(|v| Some(v.as_ref().to_string()))
                .collect(),
        )
    }

    /// Cell `i` as text (`None` when missing): numbers in shortest round-trip form.
    pub fn cell_text(&self, i: usize) -> Option<String> {
        match self {
            Column::Numbers(v) => v.get(i).filter(|v| !v.is_nan()).map(f64::to_string),
            Column::Text(v) => v.get(i).and_then(|c| c.clone()),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Column::Numbers(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    /// True when the column has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether cell `i` is missing.
    pub fn is_missing(&self, i: usize) -> bool {
        match self {
            Column::Numbers(v) => v[i].is_nan(),
            Column::Text(v) => v[i].is_none(),
        }
    }
}

/// Whether a CSV cell (already trimmed) stands for a missing value.
pub fn is_missing_marker(cell: &str) -> bool {
    cell.is_empty()
        || ["na", "n/a", "nan", "null"]
            .iter()
            .any(|m| cell.eq_ignore_ascii_case(m))
}

/// Named columns of equal length, with where each row came from (file and line) for messages.
///
/// ```
/// use metaadd::data::table::{Column, Table};
/// let table = Table::from_columns("patients", vec![
///     ("age".into(), Column::Numbers(vec![34.0, 51.0])),
///     ("city".into(), Column::Text(vec![Some("Oslo".into()), None])),
/// ])?;
/// assert_eq!(table.n_rows(), 2);
/// assert!(table.column("city")?.is_missing(1));
/// let err = table.numbers("city").unwrap_err().to_string();
/// assert_eq!(err, "patients: row 0, column `city`: `Oslo` is not a number");
/// # Ok::<(), metaadd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    source: PathBuf,
    names: Vec<String>,
    columns: Vec<Column>,
    /// The 1-based file line of each row, for a table read from a file.
    lines: Option<Vec<usize>>,
    /// Added to a missing-column message (e.g. a note on the file's separator).
    hint: String,
}

impl Table {
    /// A table from in-memory columns; `source` names it in messages. Names must be distinct
    /// and columns of one length.
    pub fn from_columns(source: impl AsRef<Path>, columns: Vec<(String, Column)>) -> Result<Self> {
        let source = source.as_ref().to_path_buf();
        let bad = |reason: String| Error::Data {
            path: source.clone(),
            reason,
        };
        let n = columns.first().map_or(0, |(_, c)| c.len());
        let mut names = Vec::with_capacity(columns.len());
        let mut cols = Vec::with_capacity(columns.len());
        for (name, column) in columns {
            if names.contains(&name) {
                return Err(bad(format!("column `{name}` appears twice")));
            }
            if column.len() != n {
                return Err(bad(format!(
                    "column `{name}` has {} values, the first column has {n}",
                    column.len()
                )));
            }
            names.push(name);
            cols.push(column);
        }
        Ok(Self {
            source,
            names,
            columns: cols,
            lines: None,
            hint: String::new(),
        })
    }

    /// Reads a CSV file with a header row (see [`CsvTable::read`] for what is accepted).
    pub fn read_csv(path: &Path) -> Result<Self> {
        Ok(Self::from_csv(&CsvTable::read(path)?))
    }

    /// The typed columns of a CSV table.
    pub fn from_csv(csv: &CsvTable) -> Self {
        let n = csv.n_rows();
        let columns = (0..csv.headers().len())
            .map(|j| {
                let cells: Vec<&str> = (0..n).map(|i| csv.cell(i, j)).collect();
                let numeric = cells
                    .iter()
                    .all(|c| is_missing_marker(c) || c.parse::<f64>().is_ok());
                if numeric {
                    Column::Numbers(
                        cells
                            .iter()
                            .map(|c| {
                                if is_missing_marker(c) {
                                    f64::NAN
                                } else {
                                    c.parse().unwrap_or(f64::NAN)
                                }
                            })
                            .collect(),
                    )
                } else {
                    Column::Text(
                        cells
                            .iter()
                            .map(|c| (!is_missing_marker(c)).then(|| c.to_string()))
                            .collect(),
                    )
                }
            })
            .collect();
        Self {
            source: csv.path().to_path_buf(),
            names: csv.headers().to_vec(),
            columns,
            lines: Some((0..n).map(|i| csv.line(i)).collect()),
            hint: csv.separator_hint(),
        }
    }

    /// Where the table came from (a file, or the name given).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Column names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// A column name as the table spells it (surrounding whitespace removed).
    pub fn column_name(&self, name: &str) -> String {
        name.trim().to_string()
    }

    /// The column called `name`; a missing one is an error listing the columns.
    pub fn column(&self, name: &str) -> Result<&Column> {
        let wanted = name.trim();
        self.names
            .iter()
            .position(|h| h == wanted)
            .map(|j| &self.columns[j])
            .ok_or_else(|| self.missing_columns(&[wanted]))
    }

    /// An error naming columns that are not in the table.
    pub fn missing_columns(&self, missing: &[&str]) -> Error {
        let all = backticked(self.names.iter());
        let reason = match missing {
            [one] => format!("no column `{one}`; the columns are {all}{}", self.hint),
            many => format!(
                "no columns {}; the columns are {all}{}",
                backticked(many.iter().copied()),
                self.hint
            ),
        };
        self.error(reason)
    }

    /// The values of column `name` as numbers (NaN where missing); a text cell is an error
    /// naming its row.
    pub fn numbers(&self, name: &str) -> Result<Vec<f64>> {
        match self.column(name)? {
            Column::Numbers(v) => Ok(v.clone()),
            Column::Text(cells) => cells
                .iter()
                .enumerate()
                .map(|(i, c)| match c {
                    None => Ok(f64::NAN),
                    Some(text) => text.trim().parse::<f64>().map_err(|_| {
                        self.cell_error(i, name, format!("`{}` is not a number", shorten(text)))
                    }),
                })
                .collect(),
        }
    }

    /// The rows at `rows`, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let columns = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Numbers(v) => Column::Numbers(rows.iter().map(|&i| v[i]).collect()),
                Column::Text(v) => Column::Text(rows.iter().map(|&i| v[i].clone()).collect()),
            })
            .collect();
        Self {
            source: self.source.clone(),
            names: self.names.clone(),
            columns,
            lines: self
                .lines
                .as_ref()
                .map(|l| rows.iter().map(|&i| l[i]).collect()),
            hint: self.hint.clone(),
        }
    }

    /// The 1-based file line of each row, for a table read from a file.
    pub fn lines(&self) -> Option<&[usize]> {
        self.lines.as_deref()
    }

    /// Where row `row` is: `line 7` (file line) or `row 5` (zero-based, in memory).
    pub fn locate(&self, row: usize) -> String {
        match &self.lines {
            Some(lines) => format!("line {}", lines.get(row).copied().unwrap_or(row + 2)),
            None => format!("row {row}"),
        }
    }

    /// An error about cell (`row`, `column`): `file: line 7, column `x`: reason`.
    pub fn cell_error(&self, row: usize, column: &str, reason: impl AsRef<str>) -> Error {
        self.error(format!(
            "{}, column `{column}`: {}",
            self.locate(row),
            reason.as_ref()
        ))
    }

    /// A label error placed at its row of `column` (or on the column).
    pub fn label_error(&self, e: Error, column: &str) -> Error {
        match e {
            Error::Label {
                row: Some(row),
                reason,
            } => self.cell_error(row, column, reason),
            Error::Label { row: None, reason } => {
                self.error(format!("column `{column}`: {reason}"))
            }
            other => other,
        }
    }

    /// An error about the whole table.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::Data {
            path: self.source.clone(),
            reason: reason.into(),
        }
    }
}
