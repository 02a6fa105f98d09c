//! Spreading a study over machines: shard `I` of `N` (0 ≤ I < N) takes the units of work
//! (an experiment's fits, a sweep's runs) whose number is `I` modulo `N`, and writes its own
//! results file; merging the `N` files gives the one run's results.
//!
//! ```
//! use metaadd::shard::Shard;
//! let shard: Shard = "1/3".parse()?;
//! let mine: Vec<usize> = (0..8).filter(|&t| shard.owns(t)).collect();
//! assert_eq!(mine, [1, 4, 7]);
//! assert_eq!(shard.path("runs/real.csv".as_ref()), std::path::Path::new("runs/real.shard-1-of-3.csv"));
//! # Ok::<(), metaadd::Error>(())
//! ```

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

impl Shard {
    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::param(
                "shard",
                format!("shard {index}/{count}: expected I/N with 0 ≤ I < N"),
            ));
        }
        Ok(Self { index, count })
    }

    /// The shard of a job array, from the scheduler's environment: Slurm's
    /// `SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN` (0 when unset) of
    /// `SLURM_ARRAY_TASK_COUNT`, else Kubernetes' `JOB_COMPLETION_INDEX`; the count is
    /// `METAADD_SHARDS` when set (needed with Kubernetes, whose `completions` is not in the
    /// environment, and with a Slurm task resubmitted alone, whose array is then of one task);
    /// `None` outside a job array.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Shard::from_env`] on the variables `var` returns.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let number = |name: &str| -> Result<Option<usize>> {
            var(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::param(
                            "shard",
                            format!("{name}={v:?} is not a non-negative whole number"),
                        )
                    })
                })
                .transpose()
        };
        let shards = number("METAADD_SHARDS")?;
        let checked = |index: usize, count: usize, from: String| {
            Self::new(index, count).map_err(|_| {
                Error::param(
                    "shard",
                    format!(
                        "{from} gives shard {index} of {count}, not one of 0 … {}: give \
                         --shard I/N (or METAADD_SHARDS for the count)",
                        count.saturating_sub(1)
                    ),
                )
            })
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = match shards {
                Some(count) => count,
                None => number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                    Error::param(
                        "shard",
                        "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor \
                         METAADD_SHARDS is",
                    )
                })?,
            };
            let index = id.checked_sub(min).ok_or_else(|| {
                Error::param(
                    "shard",
                    format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"),
                )
            })?;
            let from = format!(
                "SLURM_ARRAY_TASK_ID={id} (from SLURM_ARRAY_TASK_MIN={min}) of {count} tasks"
            );
            return checked(index, count, from).map(Some);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = shards.ok_or_else(|| {
                Error::param(
                    "shard",
                    "JOB_COMPLETION_INDEX is set but METAADD_SHARDS (the Job's completions) is \
                     not",
                )
            })?;
            return checked(index, count, format!("JOB_COMPLETION_INDEX={index}")).map(Some);
        }
        Ok(None)
    }

    /// Whether unit of work number `t` is this shard's.
    pub fn owns(&self, t: usize) -> bool {
        t % self.count == self.index
    }

    /// This shard's results file beside `path`: `results.csv` → `results.shard-I-of-N.csv`.
    pub fn path(&self, path: &Path) -> PathBuf {
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string());
        let name = format!(
            "{}.shard-{}-of-{}{}",
            stem.unwrap_or_default(),
            self.index,
            self.count,
            path.extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default()
        );
        path.with_file_name(name)
    }
}

/// Checks that `shards`, each with the file it was read from, are every shard of one division,
/// each once, as a merge needs them; returns the number of shards.
pub fn check_division(shards: &[(Shard, &Path)]) -> Result<usize> {
    let (first, _) = shards
        .first()
        .ok_or_else(|| Error::invalid("no shard files to merge"))?;
    for (i, &(shard, path)) in shards.iter().enumerate() {
        for &(earlier, other) in &shards[..i] {
            if earlier == shard {
                return Err(Error::invalid(format!(
                    "{} and {} are both shard {shard}",
                    other.display(),
                    path.display()
                )));
            }
            if earlier.count != shard.count {
                return Err(Error::invalid(format!(
                    "{} is shard {earlier} but {} is shard {shard}: shards of different \
                     divisions",
                    other.display(),
                    path.display()
                )));
            }
        }
    }
    let count = first.count;
    let missing: Vec<String> = (0..count)
        .filter(|&i| !shards.iter().any(|(s, _)| s.index == i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid(format!(
            "missing shard {} of {count}",
            missing.join(", ")
        )));
    }
    Ok(count)
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "shard",
                format!("`{s}`: expected I/N, shard I (from 0) of N, e.g. 0/4"),
            )
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Self::new(i, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_unit_once_and_read_the_schedulers_variables() -> Result<()> {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3)).collect::<Result<_>>()?;
        for t in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(t)).count(), 1);
        }
        assert!("3/3".parse::<Shard>().is_err() && "1-3".parse::<Shard>().is_err());
        fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        }
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(Shard::from_vars(env(&slurm))?, Some(Shard::new(2, 3)?));
        // Task 3 resubmitted alone: an array of one task, the count from METAADD_SHARDS.
        let again = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("METAADD_SHARDS", "8"),
        ];
        assert_eq!(Shard::from_vars(env(&again))?, Some(Shard::new(3, 8)?));
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        let e = Shard::from_vars(env(&stepped)).unwrap_err().to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID=6") && e.contains("--shard"),
            "{e}"
        );
        let k8s = [("JOB_COMPLETION_INDEX", "0"), ("METAADD_SHARDS", "4")];
        assert_eq!(Shard::from_vars(env(&k8s))?, Some(Shard::new(0, 4)?));
        assert!(Shard::from_vars(env(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
        assert_eq!(Shard::from_vars(env(&[]))?, None);
        Ok(())
    }

    #[test]
    fn a_merge_needs_every_shard_of_one_division_once() -> Result<()> {
        let (a, b, c) = (Path::new("a"), Path::new("b"), Path::new("c"));
        let s = |i, n| Shard::new(i, n);
        assert_eq!(check_division(&[(s(1, 2)?, a), (s(0, 2)?, b)])?, 2);
        let e = |shards: &[(Shard, &Path)]| check_division(shards).unwrap_err().to_string();
        assert!(e(&[(s(0, 2)?, a), (s(0, 2)?, b)]).contains("a and b are both shard 0/2"));
        assert!(e(&[(s(0, 2)?, a), (s(1, 3)?, b)]).contains("different divisions"));
        assert!(e(&[(s(0, 3)?, a), (s(2, 3)?, c)]).contains("missing shard 1/3 of 3"));
        assert!(e(&[]).contains("no shard files"));
        Ok(())
    }
}
