//! The paper's regression experiment (`metaadd experiment paper-regression` as a program): every
//! baseline over 5 seeds at the paper's size, printed as a markdown table. Finished fits are
//! kept in `target/experiments/paper-regression.csv`, so a stopped run resumes where it was.
//!
//! Run: `cargo run --release --example paper_regression` (paper size, minutes), or add `-- quick`
//! for a small version (300 rows per split, 10 features, 2 seeds; seconds).

use metaadd::experiment::{table, Experiment};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut experiment = Experiment::paper_regression();
    let quick = std::env::args().any(|a| a == "quick");
    if quick {
        experiment.n = 300;
        experiment.n_features = 10;
        experiment.seeds = 2;
    }
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/experiments");
    std::fs::create_dir_all(&folder)?;
    let results = folder.join(format!(
        "paper-regression{}.csv",
        if quick { "-quick" } else { "" }
    ));
    let records = experiment.run(Some(&results), |record, done, total| {
        eprintln!(
            "[{done}/{total}] {} {} seed {}: {:.1} s",
            record.setting, record.method, record.seed, record.seconds
        );
    })?;
    println!("{}", table(&records));
    eprintln!("results: {}", results.display());
    Ok(())
}
