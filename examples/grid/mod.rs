//! What the benchmarks that sweep rows n × columns per feature m share (`bench_design`,
//! `bench_fused`): their flags and their timing.

use anyhow::Context;
use std::time::Instant;

/// The cells to time: rows `ns` × columns per feature `ms` at `p` features, `reps` timed
/// calls each.
pub struct Grid {
    pub ns: Vec<usize>,
    pub ms: Vec<usize>,
    pub p: usize,
    pub reps: usize,
}

impl Grid {
    /// `self` (the defaults) with the command line's `--n` and `--m` (comma-separated lists),
    /// `--p` and `--reps`.
    pub fn with_args(mut self) -> anyhow::Result<Self> {
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--n" => self.ns = list(&value, "--n")?,
                "--m" => self.ms = list(&value, "--m")?,
                "--p" => self.p = value.parse().context("--p")?,
                "--reps" => self.reps = value.parse().context("--reps")?,
                other => anyhow::bail!("unknown flag {other}: --n, --m, --p, --reps"),
            }
        }
        if self.reps == 0 {
            anyhow::bail!("--reps must be positive");
        }
        Ok(self)
    }
}

fn list(v: &str, flag: &str) -> anyhow::Result<Vec<usize>> {
    v.split(',')
        .map(|s| s.trim().parse().with_context(|| format!("{flag}: `{s}`")))
        .collect()
}

/// The median seconds of `reps` timed calls of `f` after one warm-up (each result kept from
/// the optimiser).
pub fn median_seconds<R>(
    reps: usize,
    mut f: impl FnMut() -> anyhow::Result<R>,
) -> anyhow::Result<f64> {
    std::hint::black_box(f()?);
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        std::hint::black_box(f()?);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[reps / 2])
}
