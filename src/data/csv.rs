//! Reading and writing CSV data files with exact, file-level error messages.
//!
//! A [`CsvTable`] keeps every cell as text together with the file line of its row, so that each
//! use (target column, feature matrix, default feature choice) can name the file, the 1-based
//! line (the header is line 1) and the column of the first cell it cannot use.
//!
//! ```
//! use metaadd::data::csv::CsvTable;
//! use std::path::Path;
//! let text = "age,dose,y\n34,1.5,0.2\n51,2.0,0.9\n";
//! let table = CsvTable::from_reader(Path::new("train.csv"), text.as_bytes())?;
//! let (data, warnings) = table.dataset("y", None)?;
//! assert_eq!(data.feature_names(), &["age".to_string(), "dose".to_string()]);
//! assert!(warnings.is_empty());
//!
//! let bad = CsvTable::from_reader(Path::new("train.csv"), "a,y\n1,2\nabc,3\n".as_bytes())?;
//! let err = bad.dataset("y", Some(&["a".to_string()])).unwrap_err().to_string();
//! assert_eq!(err, "train.csv: line 3, column `a`: `abc` is not a number");
//! # Ok::<(), metaadd::Error>(())
//! ```

use crate::data::Dataset;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Longest cell text quoted verbatim in a message; longer cells are shortened.
const MAX_QUOTED_CHARS: usize = 40;

/// A CSV file with a header row, kept as text so that each use can report exact positions.
#[derive(Debug, Clone)]
pub struct CsvTable {
    path: PathBuf,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// The 1-based file line on which each data row starts.
    lines: Vec<usize>,
}

/// Why a cell cannot be used as a number.
enum CellProblem {
    Empty,
    NotANumber,
    NaN,
    Infinite,
}

impl CsvTable {
    /// Reads a CSV file with a header row.
    ///
    /// A missing or unreadable file is an [`Error::Io`] naming the path; any problem with the
    /// content is an [`Error::Data`] naming the path and the line.
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(path, file)
    }

    /// Reads CSV text from `reader`; `path_for_messages` names the source in every error.
    ///
    /// Accepts a UTF-8 byte-order mark, `\n`, `\r\n` or (old Mac) lone `\r` line endings,
    /// quoted fields (commas, quotes and line breaks inside), whitespace around fields and
    /// header names (also around quotes) and blank lines at the end. Refuses an empty file, a
    /// header without data rows, empty or duplicate column names (after trimming), blank lines
    /// anywhere but at the end, rows whose field count differs from the header's, a quote that
    /// is never closed and text that is not UTF-8. A row whose field count differs says why
    /// where it can tell: a `;`, tab or `|` separator in a comma-separated file, or an unquoted
    /// comma (such as a decimal comma) splitting a value in two.
    pub fn from_reader(path_for_messages: &Path, mut reader: impl Read) -> Result<Self> {
        let path = path_for_messages.to_path_buf();
        let mut raw = Vec::new();
        reader.read_to_end(&mut raw).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let text = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&raw);
        let text = lone_cr_to_lf(text);
        let text = normalize(&text).map_err(|reason| Error::Data {
            path: path.clone(),
            reason,
        })?;
        parse(path, &text)
    }

    /// The file this table was read from (as given for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Column names, in file order.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// Number of data rows (the header not counted).
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// The text of cell (`row`, `col`), trimmed; empty past the table's end.
    pub fn cell(&self, row: usize, col: usize) -> &str {
        self.rows
            .get(row)
            .and_then(|r| r.get(col))
            .map_or("", |c| c.as_str())
    }

    /// The 1-based file line on which zero-based data row `row` starts (the header is line 1).
    ///
    /// Exact also when quoted fields span several lines. For a row past the end this returns
    /// the line the row would have without multi-line fields, `row + 2`, rather than panicking.
    pub fn line(&self, row: usize) -> usize {
        self.lines.get(row).copied().unwrap_or(row + 2)
    }

    /// The named columns as a row-major matrix (`n_rows × names.len()`), in the given order
    /// (matched by name, any order in the file).
    ///
    /// Missing names give one error listing all of them and the available columns; otherwise
    /// the error names the first (earliest line) cell that is not a finite number.
    pub fn matrix(&self, names: &[String]) -> Result<Vec<f64>> {
        let cols = self.column_indices(names)?;
        let mut x = Vec::with_capacity(self.rows.len() * cols.len());
        for i in 0..self.rows.len() {
            for &j in &cols {
                x.push(self.number(i, j)?);
            }
        }
        Ok(x)
    }

    /// A training data set: the target column by name; features are `features` or, when
    /// `None`, every column other than the target whose cells all parse as numbers (a column
    /// mixing numbers and text is an error at its first cell that is not a number).
    ///
    /// Constant feature columns are dropped, each with a warning in the returned list
    /// (`"train.csv: column `x3` is constant (value 2); dropped"`); if that leaves no feature
    /// it is an error naming the file and the dropped columns. The data set carries the
    /// feature and target names.
    pub fn dataset(
        &self,
        target: &str,
        features: Option<&[String]>,
    ) -> Result<(Dataset, Vec<String>)> {
        let (names, y) = self.target_and_features(target, features)?;
        let x = self.matrix(&names)?;
        let p = names.len();
        let n = self.rows.len();

        let mut keep = Vec::with_capacity(p);
        let mut dropped = Vec::new();
        for (j, name) in names.iter().enumerate() {
            let first = x[j];
            if (1..n).all(|i| x[i * p + j] == first) {
                dropped.push((name.clone(), first));
            } else {
                keep.push(j);
            }
        }
        if keep.is_empty() {
            let list = dropped
                .iter()
                .map(|(name, v)| format!("`{name}` (value {v})"))
                .collect::<Vec<_>>()
                .join(", ");
            let hint = if n == 1 {
                " (the file has a single data row)"
            } else {
                ""
            };
            return Err(self.data_error(format!(
                "every feature column is constant, so no feature is left: {list}{hint}"
            )));
        }
        let warnings = dropped
            .iter()
            .map(|(name, v)| {
                format!(
                    "{}: column `{name}` is constant (value {v}); dropped",
                    self.path.display()
                )
            })
            .collect();

        let kept_names: Vec<String> = keep.iter().map(|&j| names[j].clone()).collect();
        let x = if keep.len() == p {
            x
        } else {
            let mut kept = Vec::with_capacity(n * keep.len());
            for i in 0..n {
                kept.extend(keep.iter().map(|&j| x[i * p + j]));
            }
            kept
        };
        let data = self.build(x, kept_names, y, target)?;
        Ok((data, warnings))
    }

    /// A data set with exactly the given feature columns, in that order, constant or not.
    ///
    /// For data that must match a model or a training file column for column (a meta set, a
    /// test set), where dropping a column that happens to be constant in this file would
    /// silently change the feature layout.
    pub fn dataset_exact(&self, target: &str, features: &[String]) -> Result<Dataset> {
        let (names, y) = self.target_and_features(target, Some(features))?;
        let x = self.matrix(&names)?;
        self.build(x, names, y, target)
    }

    /// Checks the target and the features (given or default) and reads the target values.
    fn target_and_features(
        &self,
        target: &str,
        features: Option<&[String]>,
    ) -> Result<(Vec<String>, Vec<f64>)> {
        let t = self.column_index(target)?;
        let target = self.headers[t].as_str();
        let names = match features {
            Some(given) => {
                if given.is_empty() {
                    return Err(self.data_error("the list of feature columns is empty"));
                }
                let cols = self.column_indices(given)?;
                let mut names: Vec<String> = Vec::with_capacity(cols.len());
                for &j in &cols {
                    let name = &self.headers[j];
                    if j == t {
                        return Err(self.data_error(format!(
                            "column `{name}` is the target and cannot also be a feature"
                        )));
                    }
                    if names.contains(name) {
                        return Err(
                            self.data_error(format!("feature column `{name}` is listed twice"))
                        );
                    }
                    names.push(name.clone());
                }
                names
            }
            None => {
                let (numeric, textual) = self.classify_columns(&[target])?;
                if numeric.is_empty() {
                    let skipped = if textual.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (non-numeric columns skipped: {})",
                            backticked(textual.iter())
                        )
                    };
                    return Err(self.data_error(format!(
                        "no numeric column besides the target `{target}` to use as a \
                         feature{skipped}"
                    )));
                }
                numeric
            }
        };
        let y = (0..self.rows.len())
            .map(|i| self.number(i, t))
            .collect::<Result<Vec<f64>>>()?;
        Ok((names, y))
    }

    fn build(&self, x: Vec<f64>, names: Vec<String>, y: Vec<f64>, target: &str) -> Result<Dataset> {
        let p = names.len();
        let target = self
            .headers
            .iter()
            .find(|h| h.as_str() == target.trim())
            .map_or(target, |h| h.as_str());
        Ok(Dataset::new(x, p, y)?
            .with_feature_names(names)?
            .with_target_name(target))
    }

    /// Splits the columns other than `exclude` into numeric and textual ones; a column mixing
    /// numbers and other text is an error at its first cell that is not a number.
    fn classify_columns(&self, exclude: &[&str]) -> Result<(Vec<String>, Vec<String>)> {
        let mut numeric = Vec::new();
        let mut textual = Vec::new();
        for (j, name) in self.headers.iter().enumerate() {
            if exclude.iter().any(|e| e.trim() == name) {
                continue;
            }
            let mut first_number = None;
            let mut first_other = None;
            for (i, row) in self.rows.iter().enumerate() {
                if row[j].parse::<f64>().is_ok() {
                    first_number.get_or_insert(i);
                } else {
                    first_other.get_or_insert(i);
                }
                if first_number.is_some() && first_other.is_some() {
                    break;
                }
            }
            match (first_number, first_other) {
                (Some(_), None) => numeric.push(name.clone()),
                (None, _) => textual.push(name.clone()),
                (Some(num), Some(other)) => {
                    let problem =
                        cell_problem(&self.rows[other][j]).unwrap_or(CellProblem::NotANumber);
                    return Err(self.data_error(format!(
                        "{}, but line {} holds the number `{}`: the column mixes numbers and \
                         text; fix the cell, or list the feature columns explicitly to leave \
                         `{name}` out",
                        self.cell_message(other, j, &problem),
                        self.line(num),
                        shorten(&self.rows[num][j]),
                    )));
                }
            }
        }
        Ok((numeric, textual))
    }

    /// The value of cell (`row`, `col`) if it is a finite number.
    fn number(&self, row: usize, col: usize) -> Result<f64> {
        let cell = &self.rows[row][col];
        match cell_problem(cell) {
            None => cell.parse::<f64>().map_err(|_| {
                self.data_error(self.cell_message(row, col, &CellProblem::NotANumber))
            }),
            Some(problem) => Err(self.data_error(self.cell_message(row, col, &problem))),
        }
    }

    fn cell_message(&self, row: usize, col: usize, problem: &CellProblem) -> String {
        let cell = shorten(&self.rows[row][col]);
        let what = match problem {
            CellProblem::Empty => "value is empty".to_string(),
            CellProblem::NotANumber => format!("`{cell}` is not a number"),
            CellProblem::NaN => format!("`{cell}` is NaN (must be finite)"),
            CellProblem::Infinite => format!("`{cell}` is infinite (must be finite)"),
        };
        format!(
            "line {}, column `{}`: {what}",
            self.line(row),
            self.headers[col]
        )
    }

    fn column_index(&self, name: &str) -> Result<usize> {
        let wanted = name.trim();
        self.headers
            .iter()
            .position(|h| h == wanted)
            .ok_or_else(|| {
                self.data_error(format!(
                    "no column `{wanted}`; the columns are {}{}",
                    backticked(self.headers.iter()),
                    self.separator_hint()
                ))
            })
    }

    fn column_indices(&self, names: &[String]) -> Result<Vec<usize>> {
        let mut cols = Vec::with_capacity(names.len());
        let mut missing = Vec::new();
        for name in names {
            let wanted = name.trim();
            match self.headers.iter().position(|h| h == wanted) {
                Some(j) => cols.push(j),
                None => missing.push(wanted),
            }
        }
        match missing.len() {
            0 => Ok(cols),
            1 => Err(self.data_error(format!(
                "no column `{}`; the columns are {}{}",
                missing[0],
                backticked(self.headers.iter()),
                self.separator_hint()
            ))),
            _ => Err(self.data_error(format!(
                "no columns {}; the columns are {}{}",
                backticked(missing.iter()),
                backticked(self.headers.iter()),
                self.separator_hint()
            ))),
        }
    }

    /// For a missing column: a note when the whole header is one name holding another
    /// separator (a `;`- or tab-separated file read as comma-separated), else nothing.
    pub(crate) fn separator_hint(&self) -> String {
        match self.headers.as_slice() {
            [only] => foreign_separator(only)
                .map(|sep| {
                    format!(
                        " (line 1 is a single column name holding {sep}: the file seems to be \
                         separated by {sep}, but metaadd reads comma-separated files)"
                    )
                })
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn data_error(&self, reason: impl Into<String>) -> Error {
        Error::Data {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

/// Writes a CSV file with a header row (values already formatted as strings), quoting fields
/// as needed (commas, quotes, line breaks); atomically, a link's target for a link, in place
/// for a special file ([`crate::output`]).
pub fn write_csv(path: &Path, headers: &[String], rows: &[Vec<String>]) -> Result<()> {
    check_shape(path, headers, rows)?;
    crate::output::write_with(path, |w| write_csv_to(w, path, headers, rows))
}

/// Writes CSV to any writer (standard output, a buffer); `path_for_messages` names the
/// destination in errors.
pub fn write_csv_to(
    writer: impl std::io::Write,
    path_for_messages: &Path,
    headers: &[String],
    rows: &[Vec<String>],
) -> Result<()> {
    let path = path_for_messages;
    check_shape(path, headers, rows)?;
    let csv_error = |e: ::csv::Error| match e.into_kind() {
        ::csv::ErrorKind::Io(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        other => Error::Data {
            path: path.to_path_buf(),
            reason: format!("cannot write: {other:?}"),
        },
    };
    let mut writer = ::csv::WriterBuilder::new().from_writer(writer);
    writer.write_record(headers).map_err(csv_error)?;
    for row in rows {
        writer.write_record(row).map_err(csv_error)?;
    }
    writer.flush().map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Every row must have one value per column.
fn check_shape(path: &Path, headers: &[String], rows: &[Vec<String>]) -> Result<()> {
    let data_error = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    if headers.is_empty() {
        return Err(data_error("no columns to write".to_string()));
    }
    match rows.iter().position(|row| row.len() != headers.len()) {
        Some(i) => Err(data_error(format!(
            "row {} to write has {} values, the header has {}",
            i + 1,
            rows[i].len(),
            headers.len()
        ))),
        None => Ok(()),
    }
}

/// The first separator other than a comma found in `text`, named for a message.
fn foreign_separator(text: &str) -> Option<&'static str> {
    [(';', "`;`"), ('\t', "a tab"), ('|', "`|`")]
        .into_iter()
        .find(|(c, _)| text.contains(*c))
        .map(|(_, name)| name)
}

/// Why a row may have a field count other than the header's, for the message; or nothing.
fn field_count_hint(headers: &[String], fields: &[&[u8]]) -> String {
    if let [only] = headers {
        if let Some(sep) = foreign_separator(only) {
            return format!(
                " (the header is the single column name `{}`, which holds {sep}: the \
                 separator must be a comma throughout the file)",
                shorten(only)
            );
        }
    }
    let row_separator = fields
        .iter()
        .find_map(|field| foreign_separator(&String::from_utf8_lossy(field)));
    if let Some(sep) = row_separator {
        return format!(
            " (the row holds {sep}: the separator must be a comma throughout the file)"
        );
    }
    if fields.len() > headers.len() {
        return " (an unquoted comma inside a value, such as the decimal comma in `1,5`, \
                 splits it into two fields: write numbers with a decimal point, and quote text \
                 holding commas)"
            .to_string();
    }
    String::new()
}

/// Turns each lone `\r` (old Mac line ending, not followed by `\n`) into `\n`.
///
/// The `csv` crate already ends a record at a lone `\r`; with this, line numbers in messages
/// and the blank-line checks count such lines as an editor shows them. A lone `\r` inside a
/// quoted (text) field becomes a `\n` too, a line break either way.
fn lone_cr_to_lf(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let lone = |k: usize| text[k] == b'\r' && text.get(k + 1) != Some(&b'\n');
    if !(0..text.len()).any(lone) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        (0..text.len())
            .map(|k| if lone(k) { b'\n' } else { text[k] })
            .collect(),
    )
}

/// What is wrong with a cell as a number, or `None` if it is a finite number.
fn cell_problem(cell: &str) -> Option<CellProblem> {
    if cell.is_empty() {
        return Some(CellProblem::Empty);
    }
    match cell.parse::<f64>() {
        Err(_) => Some(CellProblem::NotANumber),
        Ok(v) if v.is_nan() => Some(CellProblem::NaN),
        Ok(v) if v.is_infinite() => Some(CellProblem::Infinite),
        Ok(_) => None,
    }
}

/// Cell text for a message: control characters escaped, long text cut.
pub(crate) fn shorten(cell: &str) -> String {
    let mut out = String::new();
    for (k, c) in cell.chars().enumerate() {
        if k == MAX_QUOTED_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn backticked<S: AsRef<str>>(names: impl Iterator<Item = S>) -> String {
    names
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Quoting state of the pre-pass, mirroring the `csv` crate's parser.
#[derive(Clone, Copy, PartialEq)]
enum Quoting {
    /// At the start of a field (or record).
    FieldStart,
    /// Inside a field that did not start with a quote.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: the closing quote, or the first of `""`.
    QuoteInQuoted,
}

/// Prepares raw CSV bytes (BOM already removed) for the `csv` crate, keeping every line break:
///
/// * spaces or tabs between a field's start and its opening quote are removed, so that
///   `a, "b,c"` reads as two fields (the `csv` crate treats such a quote as literal text);
/// * blank lines (only spaces, tabs, `\r`) at the end are removed; a blank line followed by
///   more content is an error naming it, since silently skipping it hides mistakes;
/// * a quoted field whose closing quote is missing is an error naming the line it starts on.
fn normalize(raw: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut state = Quoting::FieldStart;
    let mut line = 1usize;
    let mut line_start = true;
    let mut quote_line = 0usize;
    let mut blank: Option<(usize, usize)> = None;
    let is_space = |b: u8| b == b' ' || b == b'\t';
    let mut i = 0;
    while i < raw.len() {
        if line_start {
            line_start = false;
            let end = raw[i..]
                .iter()
                .position(|&b| !(is_space(b) || b == b'\r'))
                .map_or(raw.len(), |k| i + k);
            if end == raw.len() || raw[end] == b'\n' {
                blank.get_or_insert((line, out.len()));
                if end == raw.len() {
                    break;
                }
                i = end + 1;
                line += 1;
                line_start = true;
                continue;
            }
            if let Some((blank_line, _)) = blank {
                return Err(format!(
                    "line {blank_line} is empty; remove it (blank lines are allowed only at \
                     the end of the file)"
                ));
            }
        }
        let b = raw[i];
        match state {
            Quoting::FieldStart if is_space(b) => {
                let next = raw[i..]
                    .iter()
                    .position(|&c| !is_space(c))
                    .map_or(raw.len(), |k| i + k);
                if next < raw.len() && raw[next] == b'"' {
                    i = next;
                    continue;
                }
                state = Quoting::Unquoted;
            }
            Quoting::FieldStart if b == b'"' => {
                state = Quoting::Quoted;
                quote_line = line;
            }
            Quoting::FieldStart | Quoting::Unquoted => {
                state = match b {
                    b',' | b'\r' | b'\n' => Quoting::FieldStart,
                    _ => Quoting::Unquoted,
                };
            }
            Quoting::Quoted => {
                if b == b'"' {
                    state = Quoting::QuoteInQuoted;
                }
            }
            Quoting::QuoteInQuoted => {
                state = match b {
                    b'"' => Quoting::Quoted,
                    b',' | b'\r' | b'\n' => Quoting::FieldStart,
                    _ => Quoting::Unquoted,
                };
            }
        }
        if b == b'\n' {
            line += 1;
            line_start = state != Quoting::Quoted;
        }
        out.push(b);
        i += 1;
    }
    if state == Quoting::Quoted {
        return Err(format!(
            "line {quote_line}: a quoted field starts here but its closing quote is missing"
        ));
    }
    if let Some((_, end)) = blank {
        out.truncate(end);
    }
    Ok(out)
}

/// Parses normalized CSV bytes into a table.
fn parse(path: PathBuf, text: &[u8]) -> Result<CsvTable> {
    let data_error = |reason: String| Error::Data {
        path: path.clone(),
        reason,
    };
    // Byte offsets of line breaks: a record's line is one more than the breaks before it.
    let breaks: Vec<usize> = text
        .iter()
        .enumerate()
        .filter_map(|(k, &b)| (b == b'\n').then_some(k))
        .collect();
    let line_at = |byte: usize| {
        // The csv crate may place a record just before the `\n` of a `\r\n` terminator.
        let start = text[byte.min(text.len())..]
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .map_or(text.len(), |k| byte + k);
        1 + breaks.partition_point(|&k| k < start)
    };

    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text);
    let mut record = ::csv::ByteRecord::new();
    let mut next = |record: &mut ::csv::ByteRecord| -> Result<Option<usize>> {
        match reader.read_byte_record(record) {
            Ok(true) => {
                let byte = record.position().map_or(0, |p| p.byte());
                Ok(Some(line_at(usize::try_from(byte).unwrap_or(usize::MAX))))
            }
            Ok(false) => Ok(None),
            Err(e) => {
                let at = e
                    .position()
                    .map(|p| {
                        format!(
                            "line {}: ",
                            line_at(usize::try_from(p.byte()).unwrap_or(usize::MAX))
                        )
                    })
                    .unwrap_or_default();
                Err(data_error(format!("{at}cannot parse CSV: {e}")))
            }
        }
    };

    if next(&mut record)?.is_none() {
        return Err(data_error(
            "the file is empty; it needs a header row and at least one data row".to_string(),
        ));
    }
    let mut headers = Vec::with_capacity(record.len());
    for (j, field) in record.iter().enumerate() {
        let name = std::str::from_utf8(field).map_err(|_| {
            data_error(format!(
                "line 1: the name of column {} is not valid UTF-8 text",
                j + 1
            ))
        })?;
        headers.push(name.to_string());
    }
    let unnamed: Vec<String> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.is_empty())
        .map(|(j, _)| (j + 1).to_string())
        .collect();
    if !unnamed.is_empty() {
        let what = match unnamed.len() {
            1 => format!("column {} has", unnamed[0]),
            _ => format!("columns {} have", unnamed.join(", ")),
        };
        return Err(data_error(format!(
            "line 1: header {what} no name ({} columns in all)",
            headers.len()
        )));
    }
    let mut duplicates = Vec::new();
    for (j, name) in headers.iter().enumerate() {
        if headers[..j].contains(name) {
            continue;
        }
        let at: Vec<String> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| *h == name)
            .map(|(k, _)| (k + 1).to_string())
            .collect();
        if at.len() > 1 {
            duplicates.push(format!("`{name}` (columns {})", at.join(", ")));
        }
    }
    if !duplicates.is_empty() {
        return Err(data_error(format!(
            "line 1: duplicate column names in the header: {}",
            duplicates.join("; ")
        )));
    }

    let mut rows = Vec::new();
    let mut lines = Vec::new();
    while let Some(line) = next(&mut record)? {
        if record.len() != headers.len() {
            let fields = if record.len() == 1 { "field" } else { "fields" };
            let values: Vec<&[u8]> = record.iter().collect();
            return Err(data_error(format!(
                "line {line} has {} {fields}, the header has {}{}",
                record.len(),
                headers.len(),
                field_count_hint(&headers, &values)
            )));
        }
        let mut row = Vec::with_capacity(headers.len());
        for (j, field) in record.iter().enumerate() {
            let cell = std::str::from_utf8(field).map_err(|_| {
                data_error(format!(
                    "line {line}, column `{}`: the value is not valid UTF-8 text",
                    headers[j]
                ))
            })?;
            row.push(cell.to_string());
        }
        rows.push(row);
        lines.push(line);
    }
    if rows.is_empty() {
        return Err(data_error(
            "the file has a header (line 1) but no data rows".to_string(),
        ));
    }
    Ok(CsvTable {
        path,
        headers,
        rows,
        lines,
    })
}
