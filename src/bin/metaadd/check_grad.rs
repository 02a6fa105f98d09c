//! `metaadd check-grad`: the chosen mode's hypergradient against central finite differences of
//! the function that mode differentiates, per weight-net tensor.

use crate::hypergrad::{implicit_summary, load, ProblemArgs};
use anyhow::bail;
use clap::Args;
use metaadd::hypergrad::{check_gradient, CheckOptions};

#[derive(Args)]
pub struct CheckGradArgs {
    #[command(flatten)]
    problem: ProblemArgs,
    /// Central-difference step in each weight-net parameter.
    #[arg(long, default_value_t = 1e-5)]
    step: f64,
    /// Check at most this many entries of each tensor (drawn with --seed) [default: all].
    #[arg(long)]
    entries: Option<usize>,
    /// Fail (exit status 1) when the overall relative error exceeds this.
    #[arg(long, default_value_t = 1e-6)]
    tolerance: f64,
}

pub fn run(args: &CheckGradArgs) -> anyhow::Result<()> {
    if !(args.tolerance.is_finite() && args.tolerance > 0.0) {
        bail!("--tolerance must be positive, got {}", args.tolerance);
    }
    let loaded = load(&args.problem)?;
    let options = CheckOptions {
        step: args.step,
        entries_per_tensor: args.entries,
        seed: args.problem.settings.seed,
    };
    let check = check_gradient(
        &loaded.problem,
        &loaded.start,
        &loaded.net,
        loaded.options,
        options,
    )?;
    println!("{}, objective {:.6e}", loaded.describe(), check.value);
    if let Some(report) = &check.implicit {
        println!("{}", implicit_summary(report));
    }
    println!(
        "{:<22} {:>9} {:>13} {:>13} {:>10} {:>10}",
        "tensor", "entries", "|analytic|", "|fin. diff.|", "rel. err.", "max abs"
    );
    for t in &check.tensors {
        println!(
            "{:<22} {:>9} {:>13.6e} {:>13.6e} {:>10.2e} {:>10.2e}",
            t.name,
            format!("{}/{}", t.checked, t.total),
            t.analytic_norm,
            t.difference_norm,
            t.relative_error,
            t.max_abs_error
        );
    }
    println!("overall relative error {:.2e}", check.relative_error);
    // NaN fails too.
    if check.relative_error.is_nan() || check.relative_error > args.tolerance {
        bail!(
            "relative error {:.2e} exceeds --tolerance {:.0e} (a ReLU unit of the weight net or a \
             group norm within --step of its kink also shows up here: try a smaller --step)",
            check.relative_error,
            args.tolerance
        );
    }
    Ok(())
}
