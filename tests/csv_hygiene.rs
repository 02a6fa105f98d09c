//! CSV input hygiene: files that are messy but unambiguous read exactly like the clean file;
//! files that are ambiguous are refused with an error naming the file, the line and (where one
//! applies) the column, never read by guessing.
//!
//! Read like the clean file (same `x()`, `y()`, `feature_names()` and target name, through
//! [`CsvTable::dataset`] with default and with listed features, and through
//! [`CsvTable::dataset_exact`]):
//!
//! * every field quoted, only the header names quoted, only the numbers quoted (`"1.5"`),
//!   a quoted text column holding commas, doubled quotes and a line break;
//! * a UTF-8 byte-order mark; Windows line endings (CRLF); old Mac line endings (a lone CR);
//! * no line break after the last row; one, several, whitespace-only and CRLF empty lines at
//!   the end;
//! * spaces and tabs around fields and header names, also around quoted fields;
//! * all of the above at once.
//!
//! Refused, each with file, line (and column where one applies) in the message:
//!
//! * a row with more fields than the header, a row with fewer, a row with a single field;
//! * duplicate column names (also only after trimming or unquoting), an empty or blank header
//!   name;
//! * an unterminated quote (in the header, in a data row);
//! * a blank (empty or whitespace-only) line between the header and the data or between two
//!   data rows;
//! * a decimal comma: quoted (`"1,5"`) in a feature or in the target column, with listed or
//!   default features, and unquoted (`1,5`, which splits the row into an extra field);
//! * mixed separators: a `;`- or tab-separated row in a comma file, a comma file with a
//!   `;`-separated header, and a file separated by `;` throughout;
//! * other cells that are not finite numbers (empty, text, `NaN`, `inf`, a stray quote in a
//!   number), text that is not UTF-8, an empty file, a file holding only a byte-order mark, a
//!   header without data rows.

use metaadd::data::csv::CsvTable;
use metaadd::{Dataset, Error};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed (with its files) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "metaadd-csv-hygiene-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CLEAN: &str = "age,dose,y\n34,1.5,0.2\n51,2.0,0.9\n29,0.5,-1.25\n";

fn features() -> Vec<String> {
    vec!["age".to_string(), "dose".to_string()]
}

/// The three data sets a table gives: default features, listed features, exact features.
fn datasets(path: &Path) -> Result<[Dataset; 3], Error> {
    let table = CsvTable::read(path)?;
    let (default, warnings) = table.dataset("y", None)?;
    assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
    let (listed, warnings) = table.dataset("y", Some(&features()))?;
    assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
    let exact = table.dataset_exact("y", &features())?;
    Ok([default, listed, exact])
}

fn assert_same(name: &str, got: &Dataset, want: &Dataset) {
    assert_eq!(got.x(), want.x(), "{name}: x differs");
    assert_eq!(got.y(), want.y(), "{name}: y differs");
    assert_eq!(
        got.feature_names(),
        want.feature_names(),
        "{name}: feature names differ"
    );
    assert_eq!(
        got.target_name(),
        want.target_name(),
        "{name}: target name differs"
    );
}

#[test]
fn messy_but_unambiguous_files_read_like_the_clean_file() {
    let dir = TempDir::new("messy");
    let clean = datasets(&dir.write("clean.csv", CLEAN.as_bytes())).unwrap();
    assert_eq!(clean[0].x(), &[34.0, 1.5, 51.0, 2.0, 29.0, 0.5]);
    assert_eq!(clean[0].y(), &[0.2, 0.9, -1.25]);
    assert_eq!(clean[0].feature_names(), features().as_slice());

    let crlf = CLEAN.replace('\n', "\r\n");
    let bom = |text: &str| [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "all_quoted",
            b"\"age\",\"dose\",\"y\"\n\"34\",\"1.5\",\"0.2\"\n\"51\",\"2.0\",\"0.9\"\n\"29\",\"0.5\",\"-1.25\"\n"
                .to_vec(),
        ),
        (
            "quoted_header_names",
            b"\"age\",\"dose\",\"y\"\n34,1.5,0.2\n51,2.0,0.9\n29,0.5,-1.25\n".to_vec(),
        ),
        (
            "quoted_numbers",
            b"age,dose,y\n34,\"1.5\",0.2\n51,\"2.0\",\"0.9\"\n\"29\",\"0.5\",-1.25\n".to_vec(),
        ),
        (
            "quoted_text_column_with_commas_quotes_and_a_line_break",
            b"age,note,dose,y\n34,\"a, b\",1.5,0.2\n51,\"say \"\"hi\"\"\",2.0,0.9\n29,\"two\nlines\",0.5,-1.25\n"
                .to_vec(),
        ),
        ("byte_order_mark", bom(CLEAN)),
        ("crlf", crlf.clone().into_bytes()),
        ("lone_cr", CLEAN.replace('\n', "\r").into_bytes()),
        ("no_final_line_break", CLEAN.trim_end().as_bytes().to_vec()),
        ("one_trailing_empty_line", format!("{CLEAN}\n").into_bytes()),
        ("several_trailing_empty_lines", format!("{CLEAN}\n\n\n\n").into_bytes()),
        (
            "trailing_whitespace_lines",
            format!("{CLEAN}   \n\t\n \t \n").into_bytes(),
        ),
        ("crlf_trailing_empty_lines", format!("{crlf}\r\n\r\n  \r\n").into_bytes()),
        (
            "spaces_around_fields_and_names",
            b" age , dose ,y \n 34 ,  1.5,0.2  \n51  , 2.0 , 0.9\n   29,0.5   ,  -1.25 \n".to_vec(),
        ),
        (
            "tabs_around_fields_and_names",
            b"\tage\t,dose\t,\ty\n34\t,\t1.5,0.2\t\n51,2.0,0.9\n29,0.5,-1.25\n".to_vec(),
        ),
        (
            "spaces_around_quoted_fields",
            b" \"age\" , \"dose\" ,  \"y\"\n 34 , \"1.5\" ,0.2\n51, \"2.0\",0.9\n29,0.5, \"-1.25\" \n"
                .to_vec(),
        ),
        (
            "spaces_inside_quotes",
            b"\" age \",\"dose \",\" y\"\n\" 34\",\"1.5 \",0.2\n51,2.0,0.9\n29,0.5,-1.25\n".to_vec(),
        ),
        (
            "everything_at_once",
            bom(" \"age\" ,  dose\t, \"y\"\r\n\"34\" , 1.5 ,\"0.2\"\r\n 51,\"2.0\" , 0.9\r\n29 ,0.5,-1.25\r\n\r\n \r\n\r\n"),
        ),
    ];
    for (name, bytes) in &cases {
        let path = dir.write(&format!("{name}.csv"), bytes);
        let got = datasets(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (got, want) in got.iter().zip(&clean) {
            assert_same(name, got, want);
        }
    }
}

/// The error that reading `bytes` as a file and building the data set gives (listed features
/// when `listed`, default ones otherwise), with the file's path.
fn error_of(dir: &TempDir, name: &str, bytes: &[u8], listed: bool) -> (String, String) {
    let path = dir.write(&format!("{name}.csv"), bytes);
    let result = CsvTable::read(&path).and_then(|table| {
        let features = features();
        table
            .dataset("y", listed.then_some(features.as_slice()))
            .map(|_| ())
    });
    match result {
        Ok(()) => panic!("{name}: the file was accepted"),
        Err(e) => (e.to_string(), path.display().to_string()),
    }
}

#[test]
fn ambiguous_files_are_refused_naming_file_line_and_column() {
    let dir = TempDir::new("ambiguous");
    // (name, file text, use listed features, parts the message must contain)
    let cases: Vec<(&str, &[u8], bool, &[&str])> = vec![
        (
            "row_with_more_fields",
            b"age,dose,y\n34,1.5,0.2\n51,2.0,0.9,7\n",
            false,
            &["line 3 has 4 fields, the header has 3"],
        ),
        (
            "row_with_fewer_fields",
            b"age,dose,y\n34,1.5,0.2\n51,2.0\n29,0.5,-1.25\n",
            false,
            &["line 3 has 2 fields, the header has 3"],
        ),
        (
            "row_with_one_field",
            b"age,dose,y\n34,1.5,0.2\n51\n",
            false,
            &["line 3 has 1 field, the header has 3"],
        ),
        (
            "duplicate_column_names",
            b"age,dose,age,y\n34,1.5,3,0.2\n51,2.0,4,0.9\n",
            false,
            &["line 1", "duplicate column names", "`age` (columns 1, 3)"],
        ),
        (
            "duplicate_column_names_after_trimming",
            b"age,dose, age ,y\n34,1.5,3,0.2\n51,2.0,4,0.9\n",
            false,
            &["line 1", "duplicate column names", "`age` (columns 1, 3)"],
        ),
        (
            "duplicate_column_names_after_unquoting",
            b"\"dose\",dose,y\n34,1.5,0.2\n51,2.0,0.9\n",
            false,
            &["line 1", "duplicate column names", "`dose` (columns 1, 2)"],
        ),
        (
            "empty_header_name",
            b"age,,y\n34,1.5,0.2\n51,2.0,0.9\n",
            false,
            &["line 1", "header column 2 has no name"],
        ),
        (
            "blank_header_name",
            b"age,dose,  \n34,1.5,0.2\n51,2.0,0.9\n",
            false,
            &["line 1", "header column 3 has no name"],
        ),
        (
            "empty_quoted_header_name",
            b"\"\",dose,y\n34,1.5,0.2\n51,2.0,0.9\n",
            false,
            &["line 1", "header column 1 has no name"],
        ),
        (
            "unterminated_quote_in_a_row",
            b"age,dose,y\n34,1.5,0.2\n51,\"2.0,0.9\n29,0.5,-1.25\n",
            false,
            &["line 3", "closing quote is missing"],
        ),
        (
            "unterminated_quote_in_the_header",
            b"age,\"dose,y\n34,1.5,0.2\n",
            false,
            &["line 1", "closing quote is missing"],
        ),
        (
            "unterminated_quote_in_the_last_field",
            b"age,dose,y\n34,1.5,0.2\n51,2.0,\"0.9\n",
            false,
            &["line 3", "closing quote is missing"],
        ),
        (
            "blank_line_between_data_rows",
            b"age,dose,y\n34,1.5,0.2\n\n51,2.0,0.9\n",
            false,
            &["line 3 is empty"],
        ),
        (
            "whitespace_line_between_data_rows",
            b"age,dose,y\r\n34,1.5,0.2\r\n51,2.0,0.9\r\n \t\r\n29,0.5,-1.25\r\n",
            false,
            &["line 4 is empty"],
        ),
        (
            "blank_line_between_lone_cr_rows",
            b"age,dose,y\r34,1.5,0.2\r\r51,2.0,0.9\r",
            false,
            &["line 3 is empty"],
        ),
        (
            "blank_line_after_the_header",
            b"age,dose,y\n\n34,1.5,0.2\n51,2.0,0.9\n",
            false,
            &["line 2 is empty"],
        ),
        (
            "blank_line_before_the_header",
            b"\nage,dose,y\n34,1.5,0.2\n51,2.0,0.9\n",
            false,
            &["line 1 is empty"],
        ),
        (
            "quoted_decimal_comma_listed_features",
            b"age,dose,y\n34,1.5,0.2\n51,\"2,5\",0.9\n",
            true,
            &["line 3, column `dose`", "`2,5` is not a number"],
        ),
        (
            "quoted_decimal_comma_default_features",
            b"age,dose,y\n34,1.5,0.2\n51,\"2,5\",0.9\n",
            false,
            &["line 3, column `dose`", "`2,5` is not a number"],
        ),
        (
            "quoted_decimal_comma_in_the_target",
            b"age,dose,y\n34,1.5,\"0,2\"\n51,2.0,0.9\n",
            true,
            &["line 2, column `y`", "`0,2` is not a number"],
        ),
        (
            "unquoted_decimal_comma",
            b"age,dose,y\n34,1.5,0.2\n51,2,5,0.9\n",
            false,
            &["line 3 has 4 fields, the header has 3", "decimal comma"],
        ),
        (
            "semicolon_row_in_a_comma_file",
            b"age,dose,y\n34,1.5,0.2\n51;2.0;0.9\n",
            false,
            &["line 3 has 1 field, the header has 3", "`;`"],
        ),
        (
            "tab_row_in_a_comma_file",
            b"age,dose,y\n34,1.5,0.2\n51\t2.0\t0.9\n",
            false,
            &["line 3 has 1 field, the header has 3", "tab"],
        ),
        (
            "semicolons_and_commas_in_one_row",
            b"age,dose,y\n34;1.5,0.2\n51,2.0,0.9\n",
            false,
            &["line 2 has 2 fields, the header has 3", "`;`"],
        ),
        (
            "semicolon_header_comma_rows",
            b"age;dose;y\n34,1.5,0.2\n51,2.0,0.9\n",
            false,
            &["line 2 has 3 fields, the header has 1", "`;`"],
        ),
        (
            "semicolons_throughout",
            b"age;dose;y\n34;1.5;0.2\n51;2.0;0.9\n",
            false,
            &["line 1", "`;`", "no column `y`"],
        ),
        (
            "empty_cell",
            b"age,dose,y\n34,1.5,0.2\n51, ,0.9\n",
            true,
            &["line 3, column `dose`: value is empty"],
        ),
        (
            "text_in_a_number_column",
            b"age,dose,y\n34,1.5,0.2\n51,high,0.9\n",
            true,
            &["line 3, column `dose`: `high` is not a number"],
        ),
        (
            "stray_quote_in_a_number",
            b"age,dose,y\n34,1\"5,0.2\n51,2.0,0.9\n",
            true,
            &["line 2, column `dose`", "is not a number"],
        ),
        (
            "text_after_a_closing_quote",
            b"age,dose,y\n34,\"1.5\"x,0.2\n51,2.0,0.9\n",
            true,
            &["line 2, column `dose`", "is not a number"],
        ),
        (
            "nan_cell",
            b"age,dose,y\n34,NaN,0.2\n51,2.0,0.9\n",
            true,
            &["line 2, column `dose`", "NaN"],
        ),
        (
            "infinite_cell",
            b"age,dose,y\n34,1.5,0.2\n51,2.0,-inf\n",
            true,
            &["line 3, column `y`", "infinite"],
        ),
        (
            "cell_after_a_multi_line_quoted_field",
            b"age,note,dose,y\n34,\"two\nlines\",1.5,0.2\n51,x,oops,0.9\n",
            true,
            &["line 4, column `dose`: `oops` is not a number"],
        ),
        (
            "not_utf8",
            b"age,dose,y\n34,1.5,0.2\n51,\xFF\xFE,0.9\n",
            true,
            &["line 3, column `dose`", "not valid UTF-8"],
        ),
        ("empty_file", b"", false, &["the file is empty"]),
        (
            "only_a_byte_order_mark",
            b"\xEF\xBB\xBF\r\n",
            false,
            &["the file is empty"],
        ),
        (
            "header_without_data_rows",
            b"age,dose,y\r\n\r\n",
            false,
            &["header (line 1) but no data rows"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, listed, parts) in &cases {
        let (message, path) = error_of(&dir, name, bytes, *listed);
        // The parts are looked for in the message without the path, which holds the case name.
        let reason = message.replacen(&path, "", 1);
        let mut missing: Vec<&str> = parts
            .iter()
            .copied()
            .filter(|part| !reason.contains(part))
            .collect();
        if !message.starts_with(&path) {
            missing.insert(0, &path);
        }
        if !missing.is_empty() {
            failures.push(format!("{name}: `{message}` lacks {missing:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("nowhere.csv");
    let err = CsvTable::read(&path).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nowhere.csv"), "{err}");
}

#[test]
fn line_numbers_count_crlf_lone_cr_and_bom_files_like_an_editor() {
    let dir = TempDir::new("lines");
    for (name, text) in [
        ("lf", b"age,dose,y\n34,1.5,0.2\n51,bad,0.9\n".to_vec()),
        (
            "crlf",
            b"age,dose,y\r\n34,1.5,0.2\r\n51,bad,0.9\r\n".to_vec(),
        ),
        ("lone_cr", b"age,dose,y\r34,1.5,0.2\r51,bad,0.9\r".to_vec()),
        (
            "bom_crlf",
            b"\xEF\xBB\xBFage,dose,y\r\n34,1.5,0.2\r\n51,bad,0.9\r\n".to_vec(),
        ),
    ] {
        let (message, _) = error_of(&dir, name, &text, true);
        assert!(
            message.contains("line 3, column `dose`: `bad` is not a number"),
            "{name}: {message}"
        );
        let table = CsvTable::read(&dir.0.join(format!("{name}.csv"))).unwrap();
        assert_eq!((table.line(0), table.line(1)), (2, 3), "{name}");
    }
}
