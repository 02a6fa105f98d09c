//! Output flags, checked before any work starts (`metaadd::output`): the folder exists, the
//! path is not a folder, a read-only file is not replaced. `-` is standard output for text
//! outputs and refused, with the reason, for the others (binary files, several files).

use anyhow::bail;
use metaadd::data::csv::{write_csv, write_csv_to};
use std::path::{Path, PathBuf};

/// Where a text output goes.
pub enum TextOut {
    /// `-`.
    Stdout,
    /// A file, checked.
    File(PathBuf),
}

impl TextOut {
    /// Writes a CSV table with a header row.
    pub fn write_csv(&self, headers: &[String], rows: &[Vec<String>]) -> anyhow::Result<()> {
        match self {
            TextOut::Stdout => write_csv_to(
                std::io::stdout().lock(),
                Path::new("standard output"),
                headers,
                rows,
            )?,
            TextOut::File(path) => write_csv(path, headers, rows)?,
        }
        Ok(())
    }
}

/// A text output flag: `-` is standard output, anything else a file that must be writable.
pub fn text(flag: &str, path: &Path) -> anyhow::Result<TextOut> {
    if is_stdout(path) {
        return Ok(TextOut::Stdout);
    }
    writable(flag, path)?;
    Ok(TextOut::File(path.to_path_buf()))
}

/// A file output flag whose output cannot go to standard output, for the reason `why`.
pub fn file(flag: &str, path: &Path, why: &str) -> anyhow::Result<()> {
    no_stdout(flag, path, why)?;
    writable(flag, path)
}

/// An output folder that the command creates if missing, and the `files` it writes there.
pub fn folder(flag: &str, folder: &Path, files: &[&str]) -> anyhow::Result<()> {
    metaadd::output::check_folder(folder).map_err(|e| with_flag(flag, e))?;
    if folder.is_dir() {
        for file in files {
            writable(flag, &folder.join(file))?;
        }
    }
    Ok(())
}

/// Refuses `-` for an output that cannot go to standard output, for the reason `why`.
pub fn no_stdout(flag: &str, path: &Path, why: &str) -> anyhow::Result<()> {
    if is_stdout(path) {
        bail!("{flag} -: {why}, so it cannot go to standard output; give a file name");
    }
    Ok(())
}

/// A file output flag's path (or one of the files it names) must be writable.
pub fn writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    metaadd::output::check_writable(path).map_err(|e| with_flag(flag, e))
}

fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A library error about an output, led by its flag: `--out m.safetensors: folder …`.
fn with_flag(flag: &str, e: metaadd::Error) -> anyhow::Error {
    let text = e.to_string();
    anyhow::Error::new(e).context(format!("{flag} {text}"))
}
