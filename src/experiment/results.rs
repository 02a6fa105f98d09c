//! The results file of an experiment: a plain CSV file, one [`Record`] per finished fit,
//! appended as one whole line as soon as it is done, with the experiment's description in a
//! JSON file beside it (`results.csv` → `results.json`), so that a rerun with the same
//! description skips the fits already there. Files of the older form, the description on a
//! first `# metaadd experiment: …` line, are read and resumed as they are.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// The outcome of one fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The setting's name ([`Setting`]'s `Display`).
    pub setting: String,
    /// The method's name ([`Method`]'s `Display`).
    pub method: String,
    /// The seed of the data and of the fit.
    pub seed: u64,
    /// Test MSE on standardised targets (regression).
    pub test_mse: Option<f64>,
    /// Test accuracy (classification).
    pub accuracy: Option<f64>,
    /// Test macro-F1 (classification).
    pub macro_f1: Option<f64>,
    /// Number of selected features.
    pub selected: usize,
    /// Selected features that carry signal (when the truth is known).
    pub true_positives: Option<usize>,
    /// Selected features that carry none (when the truth is known).
    pub false_positives: Option<usize>,
    /// The λ of the model.
    pub lambda: f64,
    /// Wall-clock seconds of the fit.
    pub seconds: f64,
    /// Test balanced accuracy: the mean recall over classes (classification).
    pub balanced_accuracy: Option<f64>,
    /// Test ROC-AUC (binary, or one-vs-rest macro average).
    pub roc_auc: Option<f64>,
    /// The selected features' indices (`None` in results files written before they were
    /// kept), for selection stability across seeds.
    pub features: Option<Vec<usize>>,
    /// The weighting the model was fitted with: for `huber(auto)` and `tilted(auto)` the
    /// candidate chosen (`None` in older results files).
    pub weighting: Option<String>,
    /// The fit's warnings (an empty model, a small meta set, …). Not kept in results files:
    /// they are reported when the fit runs, so a record read back has none.
    pub warnings: Vec<String>,
}

/// The columns of results files written before balanced accuracy, ROC-AUC, the selected
/// features and the chosen weighting were kept; such files are still read.
const LEGACY_COLUMNS: usize = 11;

const HEADER: [&str; 15] = [
    "setting",
    "method",
    "seed",
    "test_mse",
    "accuracy",
    "macro_f1",
    "selected",
    "true_positives",
    "false_positives",
    "lambda",
    "seconds",
    "balanced_accuracy",
    "roc_auc",
    "features",
    "weighting",
];

impl Record {
    fn fields(&self) -> Vec<String> {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:e}")).unwrap_or_default();
        let count = |v: Option<usize>| v.map(|v| v.to_string()).unwrap_or_default();
        vec![
            self.setting.clone(),
            self.method.clone(),
            self.seed.to_string(),
            opt(self.test_mse),
            opt(self.accuracy),
            opt(self.macro_f1),
            self.selected.to_string(),
            count(self.true_positives),
            count(self.false_positives),
            format!("{:e}", self.lambda),
            format!("{:.3}", self.seconds),
            opt(self.balanced_accuracy),
            opt(self.roc_auc),
            self.features.as_ref().map_or(String::new(), |f| {
                f.iter().map(usize::to_string).collect::<Vec<_>>().join(" ")
            }),
            self.weighting.clone().unwrap_or_default(),
        ]
    }

    fn parse(fields: &csv::StringRecord, line: usize, file: &Path) -> Result<Self> {
        let bad = |what: &str| {
            Error::invalid(format!(
                "{}: line {line}: {what} (expected the columns {})",
                file.display(),
                HEADER.join(",")
            ))
        };
        if fields.len() != HEADER.len() && fields.len() != LEGACY_COLUMNS {
            return Err(bad(&format!(
                "{} fields instead of {}",
                fields.len(),
                HEADER.len()
            )));
        }
        let number = |i: usize| -> Result<Option<f64>> {
            match fields[i].trim() {
                "" => Ok(None),
                v => v
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| bad(&format!("column {}: {v:?} is not a number", HEADER[i]))),
            }
        };
        let count = |i: usize| -> Result<Option<usize>> {
            match fields[i].trim() {
                "" => Ok(None),
                v => v
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| bad(&format!("column {}: {v:?} is not a count", HEADER[i]))),
            }
        };
        let required =
            |v: Option<f64>, i: usize| v.ok_or_else(|| bad(&format!("{} is empty", HEADER[i])));
        Ok(Self {
            setting: fields[0].to_string(),
            method: fields[1].to_string(),
            seed: fields[2]
                .trim()
                .parse()
                .map_err(|_| bad(&format!("column seed: {:?} is not a seed", &fields[2])))?,
            test_mse: number(3)?,
            accuracy: number(4)?,
            macro_f1: number(5)?,
            selected: count(6)?.ok_or_else(|| bad("selected is empty"))?,
            true_positives: count(7)?,
            false_positives: count(8)?,
            lambda: required(number(9)?, 9)?,
            seconds: required(number(10)?, 10)?,
            balanced_accuracy: if fields.len() > LEGACY_COLUMNS {
                number(11)?
            } else {
                None
            },
            roc_auc: if fields.len() > LEGACY_COLUMNS {
                number(12)?
            } else {
                None
            },
            features: if fields.len() > LEGACY_COLUMNS {
                let list = fields[13].trim();
                Some(if list.is_empty() {
                    Vec::new()
                } else {
                    list.split(' ')
                        .map(|v| {
                            v.parse::<usize>().map_err(|_| {
                                bad(&format!("column features: {v:?} is not a feature index"))
                            })
                        })
                        .collect::<Result<_>>()?
                })
            } else {
                None
            },
            weighting: (fields.len() > LEGACY_COLUMNS && !fields[14].trim().is_empty())
                .then(|| fields[14].trim().to_string()),
            warnings: Vec::new(),
        })
    }

    pub(crate) fn key(&self) -> (String, String, u64) {
        (self.setting.clone(), self.method.clone(), self.seed)
    }
}

/// The description a results file's sidecar holds.
fn read_description(sidecar: &Path, results: &Path) -> Result<String> {
    let text = std::fs::read_to_string(sidecar).map_err(|e| {
        Error::invalid(format!(
            "{}: its description file {} cannot be read ({e}); it says which experiment the \
             results belong to, so the run cannot resume without it",
            results.display(),
            sidecar.display()
        ))
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: {e}", sidecar.display())))?;
    value["metaadd_experiment"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| {
            Error::invalid(format!(
                "{}: no `metaadd_experiment` description",
                sidecar.display()
            ))
        })
}

/// Records of an earlier run, and the file new ones go to.
#[derive(Default)]
pub(crate) struct ResultsFile {
    file: Option<(std::fs::File, std::path::PathBuf)>,
    records: Vec<Record>,
}

impl ResultsFile {
    /// The first line of a results file written before descriptions moved to their sidecar
    /// file; such files are still read and resumed in their own form.
    const PREFIX: &'static str = "# metaadd experiment: ";

    /// The description file beside a results file: `results.csv` → `results.json`.
    pub(crate) fn sidecar(path: &Path) -> Result<std::path::PathBuf> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            return Err(Error::invalid(format!(
                "{}: a results file is CSV; its description goes to a .json file beside it, so \
                 give a name that does not end in .json",
                path.display()
            )));
        }
        Ok(path.with_extension("json"))
    }

    /// Opens `path` to append the records of the experiment `description`, reading the
    /// records already there: a plain CSV file (one header line, then one line per fit) with
    /// the description in [`ResultsFile::sidecar`], or a file of the older form with the
    /// description on its first line.
    pub(crate) fn open(path: &Path, description: &str) -> Result<Self> {
        let io = |e: std::io::Error| Error::invalid(format!("{}: {e}", path.display()));
        let sidecar = Self::sidecar(path)?;
        crate::output::check_writable(path)?;
        let mut records = Vec::new();
        // Only a regular file holds earlier results (a FIFO or a device is written, not read).
        if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            let mut text = std::fs::read_to_string(path).map_err(io)?;
            // A run stopped mid-line leaves a partial last line: drop it.
            if !text.is_empty() && !text.ends_with('\n') {
                let keep = text.rfind('\n').map_or(0, |i| i + 1);
                text.truncate(keep);
                crate::output::write_bytes(path, text.as_bytes())?;
            }
            if !text.is_empty() {
                let (found, found_records) = Self::parse(&text, path, &sidecar)?;
                if found != description {
                    return Err(Error::invalid(format!(
                        "{} holds results of another configuration:\n  file: {found}\n  now:  \
                         {description}\nremove it or choose another results file",
                        path.display()
                    )));
                }
                records = found_records;
            }
        }
        let fresh = !path.exists() || std::fs::metadata(path).map_err(io)?.len() == 0;
        if fresh {
            // Another program's file of that name is not replaced.
            if sidecar.exists() && read_description(&sidecar, path).is_err() {
                return Err(Error::invalid(format!(
                    "{}: the results' description goes to {}, which exists and is not a metaadd \
                     experiment description; move it or choose another results file",
                    path.display(),
                    sidecar.display()
                )));
            }
            let about = serde_json::json!({
                "metaadd_experiment": description,
                "results": path.file_name().map(|n| n.to_string_lossy().to_string()),
                "columns": HEADER,
            });
            crate::output::write_bytes(&sidecar, format!("{about:#}\n").as_bytes())?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if fresh {
            writeln!(file, "{}", HEADER.join(",")).map_err(io)?;
        }
        Ok(Self {
            file: Some((file, path.to_path_buf())),
            records,
        })
    }

    /// The description and records of the results file `path`, read only (a partial last
    /// line, of a run stopped mid-write, left out).
    pub(crate) fn read(path: &Path) -> Result<(String, Vec<Record>)> {
        let sidecar = Self::sidecar(path)?;
        let mut text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !text.ends_with('\n') {
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            text.truncate(keep);
        }
        if text.is_empty() {
            return Err(Error::invalid(format!(
                "{}: an empty results file",
                path.display()
            )));
        }
        Self::parse(&text, path, &sidecar)
    }

    /// The description and records of a results file's whole lines `text`.
    fn parse(text: &str, path: &Path, sidecar: &Path) -> Result<(String, Vec<Record>)> {
        let first = text.lines().next().unwrap_or_default();
        let (found, body, first_line) = match first.strip_prefix(Self::PREFIX) {
            Some(found) => (
                found.to_string(),
                text.split_once('\n').map_or("", |(_, rest)| rest),
                3,
            ),
            None => {
                let columns: Vec<&str> = first.split(',').collect();
                let known = HEADER.get(..columns.len());
                if columns.len() < LEGACY_COLUMNS || known != Some(&columns[..]) {
                    return Err(Error::invalid(format!(
                        "{}: line 1 is not the header of metaadd experiment results; \
                         refusing to read or append to it",
                        path.display()
                    )));
                }
                (read_description(sidecar, path)?, text, 2)
            }
        };
        // Flexible: rows of the legacy width are read too (see `LEGACY_COLUMNS`).
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(body.as_bytes());
        let mut records = Vec::new();
        for (i, row) in reader.records().enumerate() {
            let line = i + first_line;
            let row =
                row.map_err(|e| Error::invalid(format!("{}: line {line}: {e}", path.display())))?;
            records.push(Record::parse(&row, line, path)?);
        }
        Ok((found, records))
    }

    pub(crate) fn contains(&self, setting: &str, method: &str, seed: u64) -> bool {
        let key = (setting.to_string(), method.to_string(), seed);
        self.records.iter().any(|r| r.key() == key)
    }

    pub(crate) fn take(&mut self, setting: &str, method: &str, seed: u64) -> Option<Record> {
        let key = (setting.to_string(), method.to_string(), seed);
        let i = self.records.iter().position(|r| r.key() == key)?;
        Some(self.records.swap_remove(i))
    }

    /// One whole line per write, flushed: a run killed between fits loses nothing.
    pub(crate) fn append(&mut self, record: &Record) -> Result<()> {
        let Some((file, path)) = self.file.as_mut() else {
            return Ok(());
        };
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .write_record(record.fields())
            .and_then(|()| writer.flush().map_err(csv::Error::from))
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let line = writer
            .into_inner()
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        file.write_all(&line)
            .and_then(|()| file.flush())
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_csv_with_its_description_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut file = ResultsFile::open(&path, "desc").unwrap();
        let row = "s,m,1,,9.0e-1,8.0e-1,2,,,1e-2,1.5,7.5e-1,9.5e-1,0 4,tilted(-1)";
        let record = Record::parse(
            &csv::StringRecord::from(row.split(',').collect::<Vec<_>>()),
            2,
            &path,
        )
        .unwrap();
        file.append(&record).unwrap();
        drop(file);
        // The CSV has one header line and no comment: any CSV reader takes it as it is.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!((lines.len(), lines[0]), (2, HEADER.join(",").as_str()));
        assert!(lines[1].starts_with("s,m,1,"), "{text}");
        let about: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap())
                .unwrap();
        assert_eq!(about["metaadd_experiment"], "desc");
        // Resumed with the same description; refused with another, or without the sidecar.
        assert_eq!(
            ResultsFile::open(&path, "desc").unwrap().records,
            vec![record]
        );
        let e = ResultsFile::open(&path, "other").err().unwrap().to_string();
        assert!(e.contains("another configuration"), "{e}");
        std::fs::remove_file(dir.path().join("r.json")).unwrap();
        let e = ResultsFile::open(&path, "desc").err().unwrap().to_string();
        assert!(e.contains("r.json") && e.contains("cannot resume"), "{e}");
        let e = ResultsFile::open(&dir.path().join("r.json"), "desc")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(".json"), "{e}");
        // A first line wider than the header is refused, not read past its end.
        let wide = dir.path().join("wide.csv");
        std::fs::write(&wide, format!("{},x,y\n", HEADER.join(","))).unwrap();
        let e = ResultsFile::open(&wide, "desc").err().unwrap().to_string();
        assert!(e.contains("line 1"), "{e}");
        // Another program's JSON file where the description would go is left alone.
        let other = dir.path().join("o.csv");
        std::fs::write(dir.path().join("o.json"), "{\"mine\": 1}").unwrap();
        let e = ResultsFile::open(&other, "desc").err().unwrap().to_string();
        assert!(e.contains("o.json") && e.contains("not a metaadd"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("o.json")).unwrap(),
            "{\"mine\": 1}"
        );
    }

    #[test]
    fn legacy_and_current_rows_are_read() {
        let path = std::env::temp_dir().join(format!("metaadd-results-{}.csv", std::process::id()));
        let legacy = "s,m,0,,9.0e-1,8.0e-1,3,,,1e-2,1.5";
        let current = "s,m,1,,9.0e-1,8.0e-1,2,,,1e-2,1.5,7.5e-1,9.5e-1,0 4,tilted(-1)";
        std::fs::write(
            &path,
            format!(
                "{}d\n{}\n{legacy}\n{current}\n",
                ResultsFile::PREFIX,
                HEADER.join(",")
            ),
        )
        .unwrap();
        let file = ResultsFile::open(&path, "d").unwrap();
        let _ = std::fs::remove_file(&path);
        let (old, new) = (&file.records[0], &file.records[1]);
        assert_eq!(
            (
                old.balanced_accuracy,
                old.features.as_ref(),
                old.weighting.as_ref()
            ),
            (None, None, None)
        );
        assert_eq!(new.balanced_accuracy, Some(0.75));
        assert_eq!(new.roc_auc, Some(0.95));
        assert_eq!(new.features, Some(vec![0, 4]));
        assert_eq!(new.weighting.as_deref(), Some("tilted(-1)"));
        // Written and read back alike.
        let line = new.fields().join(",");
        assert!(line.ends_with(",0 4,tilted(-1)"), "{line}");
    }
}
