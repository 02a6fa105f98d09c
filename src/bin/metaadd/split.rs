//! `metaadd split`: a CSV file's rows split in two at random (e.g. training and test rows),
//! each written with the file's header and cells as they were.

use crate::outputs;
use anyhow::bail;
use clap::Args;
use metaadd::data::csv::{write_csv, CsvTable};
use metaadd::data::split::split_rows;
use std::path::PathBuf;

#[derive(Args)]
pub struct SplitArgs {
    /// The CSV file to split (with a header row).
    #[arg(long)]
    data: PathBuf,
    /// Fraction of the rows held out.
    #[arg(long)]
    frac: f64,
    /// Where the held-out rows go.
    #[arg(long)]
    held_out: PathBuf,
    /// Where the other rows go.
    #[arg(long)]
    rest: PathBuf,
    /// Hold out the same fraction of each value of this column (a class label).
    #[arg(long)]
    stratify: Option<String>,
    /// Seed of the draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: &SplitArgs) -> anyhow::Result<()> {
    if !(args.frac > 0.0 && args.frac < 1.0) {
        bail!("--frac must lie between 0 and 1, got {}", args.frac);
    }
    let same = |a: &std::path::Path, b: &std::path::Path| {
        let full = |p: &std::path::Path| {
            let folder = match p.parent() {
                Some(f) if !f.as_os_str().is_empty() => f.to_path_buf(),
                _ => PathBuf::from("."),
            };
            folder
                .canonicalize()
                .map(|f| f.join(p.file_name().unwrap_or_default()))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        full(a) == full(b)
    };
    for (flag, path) in [("--held-out", &args.held_out), ("--rest", &args.rest)] {
        if same(path, &args.data) {
            bail!(
                "{flag} {} is the --data file: give another file, so that the data stay",
                path.display()
            );
        }
    }
    if same(&args.held_out, &args.rest) {
        bail!(
            "--held-out and --rest are both {}: give two files",
            args.rest.display()
        );
    }
    outputs::file("--held-out", &args.held_out, "it is one of two files")?;
    outputs::file("--rest", &args.rest, "it is one of two files")?;
    let table = CsvTable::read(&args.data)?;
    let labels = match &args.stratify {
        Some(name) => {
            let Some(col) = table.headers().iter().position(|h| h == name) else {
                bail!(
                    "--stratify {name}: {} has no such column; the columns are {}",
                    args.data.display(),
                    table.headers().join(", ")
                );
            };
            Some(
                (0..table.n_rows())
                    .map(|i| table.cell(i, col).to_string())
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    let (rest, held) = split_rows(table.n_rows(), labels.as_deref(), args.frac, args.seed)?;
    let cells = |rows: &[usize]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|&i| {
                (0..table.headers().len())
                    .map(|j| table.cell(i, j).to_string())
                    .collect()
            })
            .collect()
    };
    write_csv(&args.held_out, table.headers(), &cells(&held))?;
    write_csv(&args.rest, table.headers(), &cells(&rest))?;
    eprintln!(
        "{} rows: {} to {}, {} to {}",
        table.n_rows(),
        held.len(),
        args.held_out.display(),
        rest.len(),
        args.rest.display()
    );
    Ok(())
}
