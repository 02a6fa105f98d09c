//! The tuned fixed-weight baselines `huber(auto)` and `tilted(auto)`: the candidate with the
//! best meta objective is kept, and the result is that candidate's own fit.

use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
use metaadd::experiment::Method;
use metaadd::path::PathParams;
use metaadd::{FitParams, Task, Trainer, Weighting};

fn params() -> FitParams {
    FitParams::new(Task::Regression)
        .lambda(0.02)
        .iterations(60)
        .seed(1)
}

#[test]
fn huber_auto_keeps_the_best_candidate_and_is_its_fit() {
    let splits = RegressionProtocol::new(RegressionNoise::B)
        .n(300)
        .n_features(10)
        .generate(4)
        .unwrap();
    let auto = params()
        .weighting(Weighting::HuberAuto)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    assert_eq!(auto.candidates.len(), 6);
    let (chosen, best) =
        auto.candidates
            .iter()
            .copied()
            .fold((Weighting::Uniform, f64::INFINITY), |a, b| {
                if b.1 < a.1 {
                    b
                } else {
                    a
                }
            });
    println!("huber(auto) candidates {:?}", auto.candidates);
    assert_eq!(auto.model.params().weighting, chosen);
    assert!(best.is_finite());
    // The candidates differ (the grid matters on this data) ...
    let spread = auto.candidates.iter().map(|c| c.1).fold(0.0, f64::max) - best;
    assert!(spread > 1e-4, "{:?}", auto.candidates);
    // ... and the kept model is exactly the chosen candidate's own fit.
    let direct = params()
        .weighting(chosen)
        .fit(&splits.train, &splits.meta)
        .unwrap();
    assert!(direct.candidates.is_empty());
    assert_eq!(
        auto.model.to_bytes().unwrap(),
        direct.model.to_bytes().unwrap()
    );
}

#[test]
fn tilted_auto_on_a_lambda_path_keeps_the_best_candidate() {
    let splits = RegressionProtocol::new(RegressionNoise::A)
        .n(200)
        .n_features(9)
        .generate(2)
        .unwrap();
    let path = PathParams::new(
        FitParams::new(Task::Regression)
            .weighting(Weighting::TiltedAuto)
            .iterations(20),
    )
    .lambdas(5)
    .final_iterations(0)
    .fit(&splits.train, &splits.meta)
    .unwrap();
    assert_eq!(path.candidates.len(), 9);
    let best = path
        .candidates
        .iter()
        .map(|c| c.1)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(path.scores[path.best], best);
    let kept = path.model.params().weighting;
    assert!(matches!(kept, Weighting::Tilted(_)), "{kept}");
    assert!(path.candidates.iter().any(|&(w, s)| w == kept && s == best));
}

#[test]
fn auto_weightings_parse_and_a_trainer_refuses_them() {
    assert_eq!(
        "huber(auto)".parse::<Weighting>().unwrap(),
        Weighting::HuberAuto
    );
    assert_eq!(
        "tilted( auto )".parse::<Weighting>().unwrap(),
        Weighting::TiltedAuto
    );
    assert_eq!(Weighting::TiltedAuto.to_string(), "tilted(auto)");
    assert_eq!("huber(auto)".parse::<Method>().unwrap(), Method::HuberAuto);
    let splits = RegressionProtocol::new(RegressionNoise::A)
        .n(60)
        .n_features(8)
        .generate(0)
        .unwrap();
    let err = match Trainer::new(
        &params().weighting(Weighting::HuberAuto),
        &splits.train,
        &splits.meta,
    ) {
        Ok(_) => panic!("a trainer accepted huber(auto)"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("huber(auto)") && err.contains("weighting"),
        "{err}"
    );
}
