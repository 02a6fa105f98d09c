//! The `metaadd` command line.

mod args;
mod check_grad;
mod demo;
mod evaluate;
mod experiment;
mod figures;
mod fit;
mod hypergrad;
mod inspect;
mod outputs;
mod plot;
mod predict;
mod report;
mod split;
mod sweep_k;
mod weights;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

// mimalloc for speed (docs/design.md §13.4), counted for the peak-memory figures of `sweep-k`.
#[global_allocator]
static GLOBAL: metaadd::memory::PeakAlloc<mimalloc::MiMalloc> =
    metaadd::memory::PeakAlloc::new(mimalloc::MiMalloc);

/// Meta Additive Models: sparse additive models with meta-learned sample weights.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a model on a CSV file, learning sample weights on a clean meta set.
    Fit(Box<fit::FitArgs>),
    /// Predict the rows of a CSV file with a saved model.
    Predict(predict::PredictArgs),
    /// Score a saved model on labelled rows of a CSV file (MSE, MAE, R², or accuracy,
    /// macro-F1, balanced accuracy, ROC-AUC, log-loss).
    Evaluate(evaluate::EvaluateArgs),
    /// Each labelled row's target, prediction, loss and weight under a saved model, ranked,
    /// with the down-weighted rows flagged.
    Weights(weights::WeightsArgs),
    /// Show a saved model: selected features, settings, data, versions.
    Inspect(inspect::InspectArgs),
    /// Split a CSV file's rows in two at random (e.g. training and test rows).
    Split(split::SplitArgs),
    /// Draw shape functions and the weight curve (SVG or PNG, plus CSV).
    Plot(plot::PlotArgs),
    /// Write a bilevel problem and its hypergradient to safetensors, to check elsewhere.
    Hypergrad(Box<hypergrad::HypergradArgs>),
    /// Check a hypergradient mode against central finite differences, per weight-net tensor.
    CheckGrad(Box<check_grad::CheckGradArgs>),
    /// Compare hypergradient modes over unroll depths K: accuracy, outcome, time and memory.
    SweepK(Box<sweep_k::SweepArgs>),
    /// Train MAM and a uniform-weight model on the paper's regression protocol with noise B.
    Demo(demo::DemoArgs),
    /// Run the paper's experiments: every baseline over seeds, as a markdown table.
    Experiment(Box<experiment::ExperimentArgs>),
}

fn main() {
    // Negative numbers are values (`--lambda -1` is then refused for its value, naming the
    // flag), in every command.
    let mut command = Cli::command();
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |c| c.allow_negative_numbers(true));
    }
    let matches = command.get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = refuse_ignored_flags(&matches) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let result = match cli.command {
        Command::Fit(args) => fit::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Evaluate(args) => evaluate::run(&args),
        Command::Weights(args) => weights::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Split(args) => split::run(&args),
        Command::Hypergrad(args) => hypergrad::run(&args),
        Command::CheckGrad(args) => check_grad::run(&args),
        Command::SweepK(args) => sweep_k::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Experiment(args) => experiment::run(&args),
    };
    if let Err(e) = result {
        if is_broken_pipe(&e) {
            // The reader went away (`metaadd predict ... | head`): not an error of ours.
            std::process::exit(0);
        }
        // One message: the outermost context, then its causes.
        let mut message = e.to_string();
        for cause in e.chain().skip(1) {
            // Library errors already include their source's text.
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(&format!(": {text}"));
            }
        }
        // `metaadd::Error::NonFinite`, also where a command kept only its text.
        if message.contains("training diverged") {
            message.push_str(
                " (a step too large for the problem: try a smaller --eta, or a smaller --lr)",
            );
        }
        eprintln!("error: {}", with_flag_names(&message));
        std::process::exit(1);
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The library names a setting by its field (`invalid parameter `learning_rate``); the command
/// line says which flag that is (`invalid --lr`).
fn with_flag_names(message: &str) -> String {
    const PREFIX: &str = "invalid parameter `";
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PREFIX.len()..];
        let Some(end) = after.find('`') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let name = &after[..end];
        let flags: Option<Vec<String>> = name.split(", ").map(flag_of).collect();
        match flags {
            Some(flags) => out.push_str(&format!("invalid {}", flags.join(", "))),
            // A name this table does not know keeps the library's wording.
            None => out.push_str(&rest[at..at + PREFIX.len() + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The flag of a library parameter: every fit setting (`SETTINGS`), and the few others whose
/// flag is the same in every command that reaches them.
fn flag_of(name: &str) -> Option<String> {
    if let Some(setting) = metaadd::params::SETTINGS.iter().find(|s| s.key == name) {
        return Some(format!("--{}", setting.flag));
    }
    let flag = match name {
        "threads" => "--threads",
        "device" => "--device",
        "down_threshold" => "--down-threshold",
        "lambdas" => "--lambdas",
        // Only `fit` holds out a meta fraction through the library (`split` checks its own).
        "meta_frac" => "--meta-frac",
        "meta_select" => "--meta-select",
        _ => return None,
    };
    Some(flag.to_string())
}

/// Flags a command accepts through a shared group but does not use: refused, so that a run
/// never silently ignores what it was told.
fn refuse_ignored_flags(matches: &ArgMatches) -> anyhow::Result<()> {
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(());
    };
    let given = |id: &str| {
        sub.try_get_raw(id).is_ok_and(|v| v.is_some())
            && sub.value_source(id) == Some(ValueSource::CommandLine)
    };
    // Only `fit` has a typed --lambda (other commands take it as text).
    let fixed_lambda = match name {
        "fit" => match sub.try_get_one::<args::LambdaArg>("lambda") {
            Ok(Some(args::LambdaArg::Value(lambda))) => Some(*lambda),
            _ => None,
        },
        _ => None,
    };
    if let Some(lambda) = fixed_lambda {
        for (id, flag) in [
            ("lambdas", "--lambdas"),
            ("min_ratio", "--min-ratio"),
            ("path_iterations", "--path-iterations"),
            ("path_plot", "--path-plot"),
            ("select_by", "--select-by"),
        ] {
            if given(id) {
                anyhow::bail!(
                    "{flag} is for the λ path of --lambda auto; with --lambda {lambda} there is \
                     no path: remove it, or give --lambda auto"
                );
            }
        }
    }
    if name == "hypergrad" || name == "check-grad" {
        // The hypergradient is computed in f64 at one state: nothing is trained.
        for (id, flag) in [
            ("dtype", "--dtype (it computes in f64)"),
            ("lr", "--lr (nothing is trained)"),
            ("weight_decay", "--weight-decay (nothing is trained)"),
            ("iterations", "--iterations (nothing is trained)"),
            ("inner_steps", "--inner-steps (nothing is trained)"),
            ("train_batch", "--train-batch (it uses every row)"),
            ("meta_batch", "--meta-batch (it uses every row)"),
            ("final_solve", "--final-solve (nothing is solved)"),
            ("solver_tolerance", "--solver-tolerance (nothing is solved)"),
            ("solver_epochs", "--solver-epochs (nothing is solved)"),
        ] {
            if given(id) {
                anyhow::bail!("{name} does not use {flag}: remove it");
            }
        }
        if given("model") {
            // The problem is the model's; only the hypergradient's own settings apply.
            for id in [
                "features",
                "task",
                "loss",
                "basis",
                "n_basis",
                "orthonormal",
                "weighting",
                "normalize_weights",
                "meta_objective",
                "weight_curve",
                "class_aware",
                "lambda",
                "eta",
                "ridge",
                "hidden",
                "standardize_target",
            ] {
                if given(id) {
                    anyhow::bail!(
                        "{name} --model takes the problem from the model file, so --{} would be \
                         ignored: remove it (only --k, --hypergradient, --detach-weight-input and \
                         --seed apply)",
                        id.replace('_', "-")
                    );
                }
            }
        }
    }
    Ok(())
}
