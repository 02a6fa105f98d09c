//! The paper's regression experiment (`metaadd experiment paper-regression` as a program): every
//! baseline over 5 seeds at the paper's size, printed as a markdown table. Finished fits are
//! kept in `target/experiments/paper-regression.csv`, so a stopped run resumes where it was.
//!
//! Run: `cargo run --release --example paper_regression` (paper size, minutes), or add `-- quick`
//! for a small version (300 rows per split, 10 features, 2 seeds; seconds).

mod common;

use metaadd::experiment::Experiment;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "quick");
    common::run_experiment(Experiment::paper_regression(), "paper-regression", quick)
}
