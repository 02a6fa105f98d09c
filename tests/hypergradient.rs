//! The exact K-step hypergradient against central finite differences of F_K (f64), and against
//! an independent forward-mode computation written without candle.

use candle_core::{DType, Device, Tensor};
use metaadd::design::DesignStorage;
use metaadd::hypergrad::{hypergradient, Bilevel, HypergradMode, HypergradOptions, UnrollInputs};
use metaadd::inner::{Coefficients, InnerStep, Problem};
use metaadd::weightnet::WeightNetParams;
use metaadd::{BasisSpec, SplineBasis, Task, WeightNet};
use rand::{rngs::StdRng, Rng, SeedableRng};

const N: usize = 40;
const P: usize = 5; // features (groups)
const M: usize = 3; // columns per group
const HIDDEN: usize = 6;

struct Setup {
    problem: Bilevel,
    start: Coefficients,
    net: WeightNet,
}

fn gaussian(rng: &mut StdRng) -> f64 {
    // Box–Muller: enough for test data.
    let u: f64 = rng.random_range(1e-12..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Row `i`'s target from its signal `s`: every 7th regression target an outlier, classes by
/// thresholds.
fn target(task: Task, s: f64, i: usize) -> f64 {
    match task {
        Task::Regression => s + if i.is_multiple_of(7) { 6.0 } else { 0.0 },
        Task::Binary => f64::from(s > 0.0),
        Task::Multiclass { classes } => ((s + 2.0).max(0.0) as usize).min(classes - 1) as f64,
    }
}

/// A small problem in which features 0 and 1 carry signal and the rest are noise, so that with
/// the chosen λ some groups are zero and some are not along the unroll.
fn setup(task: Task, lambda: f64, seed: u64) -> Setup {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(seed);
    let make = |rng: &mut StdRng, n: usize| -> (Tensor, Tensor) {
        let x: Vec<f64> = (0..n * P * M).map(|_| gaussian(rng)).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let s = 1.5 * x[i * P * M] - x[i * P * M + M + 1] + 0.3 * gaussian(rng);
                target(task, s, i)
            })
            .collect();
        let design = Tensor::from_vec(x, (n, P * M), &dev).unwrap();
        let target = task.encode_targets(&y, DType::F64, &dev).unwrap();
        (design, target)
    };
    let loss = task.default_loss();
    let (dt, yt) = make(&mut rng, N);
    let (dm, ym) = make(&mut rng, N / 2);
    let train = Problem::new(&dt, &yt, loss).unwrap();
    let meta = Problem::new(&dm, &ym, loss).unwrap();
    assemble((train, meta), lambda, M, seed, &mut rng)
}

/// A setup on `problems` (training, meta) of `P` groups of `m` columns: a random start with
/// group 2 at exactly zero (the safe norm must keep its derivative finite), η = 0.15, strength
/// `lambda`, a weight net of `HIDDEN` units.
fn assemble(
    (train, meta): (Problem, Problem),
    lambda: f64,
    m: usize,
    seed: u64,
    rng: &mut StdRng,
) -> Setup {
    let dev = Device::Cpu;
    let outputs = train.target().dims()[1];
    let beta: Vec<f64> = (0..P * m * outputs)
        .map(|k| {
            if (k / outputs) / m == 2 {
                0.0
            } else {
                0.3 * gaussian(rng)
            }
        })
        .collect();
    Setup {
        problem: Bilevel {
            train,
            meta,
            step: InnerStep {
                eta: 0.15,
                lambda,
                ridge: 0.0,
                n_features: P,
                normalize_weights: false,
            },
        },
        start: Coefficients {
            beta: Tensor::from_vec(beta, (P * m, outputs), &dev).unwrap(),
            bias: Tensor::from_vec(vec![0.1; outputs], outputs, &dev).unwrap(),
        },
        net: WeightNet::new(HIDDEN, seed, DType::F64, &dev).unwrap(),
    }
}

/// Columns per feature of the spline designs: cubic B-splines, 4 of 7 raw functions non-zero
/// in each row.
const M_SPLINE: usize = 6;

/// A problem like [`setup`]'s on a cubic B-spline design of `P` raw features (`P·M_SPLINE`
/// columns), whose products read the form `storage` takes: the dense matrix, the sparse form,
/// or the sparse form with each step fused into one pass over the rows each way.
fn spline_setup(task: Task, lambda: f64, seed: u64, storage: DesignStorage) -> Setup {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(seed);
    let spec = BasisSpec::bspline(M_SPLINE).orthonormalized(true);
    let draw = |rng: &mut StdRng, n: usize| -> (Vec<f64>, Vec<f64>) {
        let x: Vec<f64> = (0..n * P).map(|_| gaussian(rng)).collect();
        let y = (0..n)
            .map(|i| {
                let s = 1.5 * x[i * P].sin() * 2.0 - x[i * P + 1] + 0.3 * gaussian(rng);
                target(task, s, i)
            })
            .collect();
        (x, y)
    };
    let (xt, yt) = draw(&mut rng, N);
    let (xm, ym) = draw(&mut rng, N / 2);
    let basis = SplineBasis::fit(spec, &xt, P).unwrap();
    let problem = |x: &[f64], y: &[f64]| {
        let n = y.len();
        let design =
            Tensor::from_vec(basis.transform(x).unwrap(), (n, P * M_SPLINE), &dev).unwrap();
        let target = task.encode_targets(y, DType::F64, &dev).unwrap();
        let problem = Problem::new(&design, &target, task.default_loss()).unwrap();
        problem.with_design_storage(storage, &basis, x).unwrap()
    };
    let problems = (problem(&xt, &yt), problem(&xm, &ym));
    assemble(problems, lambda, M_SPLINE, seed, &mut rng)
}

fn flatten(ts: &WeightNetParams) -> Vec<f64> {
    ts.iter()
        .flat_map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
        .collect()
}

/// The weight net with its flattened parameter vector replaced.
fn with_params(net: &WeightNet, flat: &[f64]) -> WeightNet {
    let mut offset = 0;
    let tensors = net.tensors().map(|t| {
        let len = t.elem_count();
        let part = flat[offset..offset + len].to_vec();
        offset += len;
        Tensor::from_vec(part, t.shape(), t.device()).unwrap()
    });
    WeightNet::from_tensors(&tensors)
        .unwrap()
        .with_curve(net.curve())
}

fn meta_loss(s: &Setup, net: &WeightNet, k: usize, frozen: Option<&[Tensor]>) -> f64 {
    let inputs = frozen.map_or(UnrollInputs::Live, UnrollInputs::Frozen);
    s.problem
        .unroll(&s.start, net, k, inputs)
        .unwrap()
        .meta_loss
        .to_scalar::<f64>()
        .unwrap()
}

/// Central differences of F_K over every weight-net parameter.
fn finite_differences(s: &Setup, k: usize, frozen: Option<&[Tensor]>) -> Vec<f64> {
    let base = flatten(&s.net.tensors());
    let eps = 1e-5;
    (0..base.len())
        .map(|i| {
            let mut plus = base.clone();
            plus[i] += eps;
            let mut minus = base.clone();
            minus[i] -= eps;
            let fp = meta_loss(s, &with_params(&s.net, &plus), k, frozen);
            let fm = meta_loss(s, &with_params(&s.net, &minus), k, frozen);
            (fp - fm) / (2.0 * eps)
        })
        .collect()
}

fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm).sqrt()
}

/// One inner step of the exact map from `c` at the base parameters.
fn step(s: &Setup, c: &Coefficients) -> Coefficients {
    s.problem
        .step
        .apply(
            &s.problem.train,
            c,
            &s.net,
            metaadd::inner::WeightInput::Live,
        )
        .unwrap()
        .next
}

/// Counts of zero and non-zero groups over all steps of the unroll at the base parameters.
fn group_pattern(s: &Setup, k: usize) -> (usize, usize) {
    let (mut zero, mut active) = (0, 0);
    let mut c = s.start.clone();
    for _ in 0..k {
        c = step(s, &c);
        let a = c.active_groups(P).unwrap().len();
        active += a;
        zero += P - a;
    }
    (zero, active)
}

fn check_exact(task: Task, lambda: f64, seed: u64) {
    check_exact_on(setup, task, lambda, seed)
}

fn check_exact_on(make: fn(Task, f64, u64) -> Setup, task: Task, lambda: f64, seed: u64) {
    for k in [1, 2, 5, 20] {
        let s = make(task, lambda, seed);
        let (zero, active) = group_pattern(&s, k);
        assert!(
            zero > 0 && active > 0,
            "{task} K={k}: need both zero ({zero}) and active ({active}) groups"
        );
        let hg = hypergradient(&s.problem, &s.start, &s.net, HypergradOptions::new(k)).unwrap();
        let exact = flatten(&hg.grads);
        let fd = finite_differences(&s, k, None);
        let err = relative_error(&exact, &fd);
        println!("{task} K={k}: relative error {err:.2e} (zero groups {zero}, active {active})");
        assert!(err <= 1e-6, "{task} K={k}: relative error {err:e}");
        assert!((hg.meta_loss - meta_loss(&s, &s.net, k, None)).abs() < 1e-14);
    }
}

// Seeds are fixed so that no ReLU unit of the weight net and no group norm sits within the
// finite-difference step of its kink along the path (seed 11 puts a ReLU unit there at K = 20).
#[test]
fn exact_hypergradient_matches_finite_differences_squared() {
    check_exact(Task::Regression, 0.8, 15);
}

#[test]
fn exact_hypergradient_matches_finite_differences_logistic() {
    check_exact(Task::Binary, 0.3, 15);
}

#[test]
fn exact_hypergradient_matches_finite_differences_softmax() {
    check_exact(Task::Multiclass { classes: 3 }, 0.5, 15);
}

#[test]
fn exact_hypergradient_with_normalized_weights_matches_finite_differences() {
    for (task, lambda) in [(Task::Regression, 0.8), (Task::Binary, 0.3)] {
        for k in [1, 5, 20] {
            let mut s = setup(task, lambda, 15);
            s.problem.step.normalize_weights = true;
            let hg = hypergradient(&s.problem, &s.start, &s.net, HypergradOptions::new(k)).unwrap();
            let err = relative_error(&flatten(&hg.grads), &finite_differences(&s, k, None));
            println!("{task} K={k}, normalized weights: relative error {err:.2e}");
            assert!(err <= 1e-6, "{task} K={k}: relative error {err:e}");
        }
    }
}

#[test]
fn exact_hypergradient_with_balanced_meta_loss_matches_finite_differences() {
    for (task, lambda) in [(Task::Binary, 0.3), (Task::Multiclass { classes: 3 }, 0.5)] {
        for k in [1, 5, 20] {
            let mut s = setup(task, lambda, 15);
            s.problem.meta = s.problem.meta.class_balanced().unwrap();
            let hg = hypergradient(&s.problem, &s.start, &s.net, HypergradOptions::new(k)).unwrap();
            let err = relative_error(&flatten(&hg.grads), &finite_differences(&s, k, None));
            println!("{task} K={k}, balanced meta loss: relative error {err:.2e}");
            assert!(err <= 1e-6, "{task} K={k}: relative error {err:e}");
            assert!((hg.meta_loss - meta_loss(&s, &s.net, k, None)).abs() < 1e-14);
        }
    }
}

#[test]
fn exact_hypergradient_with_monotone_weight_curves_matches_finite_differences() {
    use metaadd::weightnet::WeightCurve;
    // Seed 16: with seed 15 a ReLU unit of the increasing softmax net crosses its kink within
    // the finite-difference step at K = 20 (as noted above for the other seeds).
    let seed = 16;
    for curve in [WeightCurve::Decreasing, WeightCurve::Increasing] {
        for (task, lambda) in TASKS {
            for k in [1, 5, 20] {
                let mut s = setup(task, lambda, seed);
                s.net = s.net.clone().with_curve(curve);
                let hg =
                    hypergradient(&s.problem, &s.start, &s.net, HypergradOptions::new(k)).unwrap();
                let err = relative_error(&flatten(&hg.grads), &finite_differences(&s, k, None));
                println!("{task} K={k}, {curve} weight curve: relative error {err:.2e}");
                assert!(err <= 1e-6, "{task} K={k} {curve}: relative error {err:e}");
                // The curve is what it says on the losses the unroll saw.
                let losses = s.problem.train.losses(&s.start).unwrap();
                let mut pairs: Vec<(f64, f64)> = losses
                    .to_vec1::<f64>()
                    .unwrap()
                    .into_iter()
                    .zip(s.net.forward(&losses).unwrap().to_vec1::<f64>().unwrap())
                    .collect();
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
                assert!(pairs.windows(2).all(|p| match curve {
                    WeightCurve::Decreasing => p[1].1 <= p[0].1,
                    _ => p[1].1 >= p[0].1,
                }));
            }
        }
    }
}

#[test]
fn exact_hypergradient_with_a_class_aware_weight_net_matches_finite_differences() {
    use metaadd::weightnet::WeightCurve;
    for (task, lambda) in [(Task::Binary, 0.3), (Task::Multiclass { classes: 3 }, 0.5)] {
        for curve in [WeightCurve::Free, WeightCurve::Decreasing] {
            for k in [1, 5, 20] {
                let mut s = setup(task, lambda, 15);
                let classes = task.outputs().max(2);
                // Class columns away from their zero start, so that they matter.
                let net =
                    WeightNet::with_classes(HIDDEN, classes, 15, DType::F64, &Device::Cpu).unwrap();
                let mut t = net.tensors();
                let w1: Vec<f64> = t.fc1_weight.flatten_all().unwrap().to_vec1().unwrap();
                let w1: Vec<f64> = w1
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| {
                        if i % (1 + classes) == 0 {
                            w
                        } else {
                            0.4 * (i as f64).sin()
                        }
                    })
                    .collect();
                t.fc1_weight = Tensor::from_vec(w1, (HIDDEN, 1 + classes), &Device::Cpu).unwrap();
                s.net = WeightNet::from_tensors(&t).unwrap().with_curve(curve);
                let hg =
                    hypergradient(&s.problem, &s.start, &s.net, HypergradOptions::new(k)).unwrap();
                let err = relative_error(&flatten(&hg.grads), &finite_differences(&s, k, None));
                println!("{task} K={k}, class-aware {curve} net: relative error {err:.2e}");
                assert!(err <= 1e-6, "{task} K={k} {curve}: relative error {err:e}");
                // The class columns get a gradient: the classes are seen.
                let g = hg
                    .grads
                    .fc1_weight
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                assert!(g
                    .iter()
                    .enumerate()
                    .any(|(i, g)| i % (1 + classes) != 0 && *g != 0.0));
            }
        }
    }
}

#[test]
fn detached_weight_input_matches_finite_differences_of_frozen_map() {
    for task in [Task::Regression, Task::Binary] {
        let lambda = if task == Task::Regression { 0.8 } else { 0.3 };
        for k in [1, 5] {
            let s = setup(task, lambda, 3);
            let frozen = s
                .problem
                .unroll(&s.start, &s.net, k, UnrollInputs::Live)
                .unwrap()
                .weight_inputs;
            let hg = hypergradient(
                &s.problem,
                &s.start,
                &s.net,
                HypergradOptions::new(k).detach_weight_input(true),
            )
            .unwrap();
            let fd = finite_differences(&s, k, Some(&frozen));
            let err = relative_error(&flatten(&hg.grads), &fd);
            println!("{task} detached K={k}: relative error {err:.2e}");
            assert!(err <= 1e-6, "{task} detached K={k}: {err:e}");
            // At K = 1 the weight net's input ℓ(β₀) does not depend on φ, so both modes agree;
            // deeper, the detached gradient is a different quantity from the exact one.
            let live = finite_differences(&s, k, None);
            let gap = relative_error(&flatten(&hg.grads), &live);
            if k == 1 {
                assert!(
                    gap <= 1e-6,
                    "{task} K=1: detached differs from exact by {gap:e}"
                );
            } else {
                assert!(gap > 1e-4, "{task} K={k}: detached equals exact ({gap:e})");
            }
        }
    }
}

/// Forward-mode differentiation of the same K-step map, written from the formulas of docs/design.md §5–§7
/// on plain `f64` with dual numbers: no candle, no autodiff graph.
mod forward_mode {
    use std::ops::{Add, Div, Mul, Sub};

    #[derive(Clone, Copy, Debug)]
    pub struct Dual {
        pub v: f64,
        pub d: f64,
    }

    pub fn c(v: f64) -> Dual {
        Dual { v, d: 0.0 }
    }

    impl Add for Dual {
        type Output = Dual;
        fn add(self, o: Dual) -> Dual {
            Dual {
                v: self.v + o.v,
                d: self.d + o.d,
            }
        }
    }
    impl Sub for Dual {
        type Output = Dual;
        fn sub(self, o: Dual) -> Dual {
            Dual {
                v: self.v - o.v,
                d: self.d - o.d,
            }
        }
    }
    impl Mul for Dual {
        type Output = Dual;
        fn mul(self, o: Dual) -> Dual {
            Dual {
                v: self.v * o.v,
                d: self.d * o.v + self.v * o.d,
            }
        }
    }
    impl Div for Dual {
        type Output = Dual;
        fn div(self, o: Dual) -> Dual {
            Dual {
                v: self.v / o.v,
                d: (self.d * o.v - self.v * o.d) / (o.v * o.v),
            }
        }
    }
    impl Dual {
        pub fn exp(self) -> Dual {
            let e = self.v.exp();
            Dual {
                v: e,
                d: e * self.d,
            }
        }
        pub fn ln(self) -> Dual {
            Dual {
                v: self.v.ln(),
                d: self.d / self.v,
            }
        }
        pub fn sqrt(self) -> Dual {
            let s = self.v.sqrt();
            Dual {
                v: s,
                d: self.d / (2.0 * s),
            }
        }
        pub fn relu(self) -> Dual {
            if self.v > 0.0 {
                self
            } else {
                c(0.0)
            }
        }
        pub fn sigmoid(self) -> Dual {
            let s = 1.0 / (1.0 + (-self.v).exp());
            Dual {
                v: s,
                d: s * (1.0 - s) * self.d,
            }
        }
        pub fn softplus(self) -> Dual {
            let v = self.v.max(0.0) + (-self.v.abs()).exp().ln_1p();
            Dual {
                v,
                d: self.sigmoid().v * self.d,
            }
        }
    }

    pub enum Kind {
        Squared,
        Logistic,
        Softmax,
    }

    pub struct Data {
        pub x: Vec<Vec<f64>>, // [n][P]
        pub y: Vec<Vec<f64>>, // [n][C], encoded
        /// Each row's share of the meta loss; the plain mean when `None`.
        pub shares: Option<Vec<f64>>,
    }

    /// Class-balanced shares `1/(K·n_class)`, the class read off the encoded targets.
    pub fn balanced_shares(y: &[Vec<f64>]) -> Vec<f64> {
        let class = |row: &Vec<f64>| -> usize {
            if row.len() == 1 {
                usize::from(row[0] > 0.5)
            } else {
                (0..row.len()).find(|&j| row[j] == 1.0).unwrap()
            }
        };
        let mut counts = std::collections::BTreeMap::new();
        for row in y {
            *counts.entry(class(row)).or_insert(0usize) += 1;
        }
        let k = counts.len() as f64;
        y.iter()
            .map(|row| 1.0 / (k * counts[&class(row)] as f64))
            .collect()
    }

    /// Per-sample loss and its derivative with respect to the row's outputs.
    fn loss(kind: &Kind, f: &[Dual], y: &[f64]) -> (Dual, Vec<Dual>) {
        match kind {
            Kind::Squared => {
                let r = f[0] - c(y[0]);
                (c(0.5) * r * r, vec![r])
            }
            Kind::Logistic => {
                let s = f[0].softplus();
                (s - c(y[0]) * f[0], vec![f[0].sigmoid() - c(y[0])])
            }
            Kind::Softmax => {
                let m = f.iter().map(|d| d.v).fold(f64::MIN, f64::max);
                let sum = f.iter().fold(c(0.0), |acc, &fc| acc + (fc - c(m)).exp());
                let lse = sum.ln() + c(m);
                let dot = f
                    .iter()
                    .zip(y)
                    .fold(c(0.0), |acc, (&fc, &yc)| acc + fc * c(yc));
                let grad = f
                    .iter()
                    .zip(y)
                    .map(|(&fc, &yc)| (fc - lse).exp() - c(yc))
                    .collect();
                (lse - dot, grad)
            }
        }
    }

    fn outputs(x: &[f64], beta: &[Vec<Dual>], bias: &[Dual]) -> Vec<Dual> {
        (0..bias.len())
            .map(|k| {
                x.iter()
                    .zip(beta)
                    .fold(bias[k], |acc, (&xj, row)| acc + c(xj) * row[k])
            })
            .collect()
    }

    pub struct Net {
        pub b1: Vec<Dual>,
        pub w1: Vec<Dual>,
        pub b2: Dual,
        pub w2: Vec<Dual>,
    }

    fn weight(net: &Net, l: Dual) -> Dual {
        let mut out = net.b2;
        for h in 0..net.w1.len() {
            out = out + net.w2[h] * (net.w1[h] * l + net.b1[h]).relu();
        }
        out.sigmoid()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn meta_loss(
        kind: &Kind,
        train: &Data,
        meta: &Data,
        net: &Net,
        mut beta: Vec<Vec<Dual>>,
        mut bias: Vec<Dual>,
        (eta, lambda, groups): (f64, f64, usize),
        k: usize,
    ) -> Dual {
        let n = train.x.len() as f64;
        let cols = beta.len();
        let outs = bias.len();
        let m = cols / groups;
        for _ in 0..k {
            let mut grad = vec![vec![c(0.0); outs]; cols];
            let mut grad_bias = vec![c(0.0); outs];
            for (x, y) in train.x.iter().zip(&train.y) {
                let f = outputs(x, &beta, &bias);
                let (l, dl) = loss(kind, &f, y);
                let w = weight(net, l);
                for o in 0..outs {
                    let r = w * dl[o] / c(n);
                    grad_bias[o] = grad_bias[o] + r;
                    for j in 0..cols {
                        grad[j][o] = grad[j][o] + c(x[j]) * r;
                    }
                }
            }
            for g in 0..groups {
                let u: Vec<Vec<Dual>> = (g * m..(g + 1) * m)
                    .map(|j| {
                        (0..outs)
                            .map(|o| beta[j][o] - c(eta) * grad[j][o])
                            .collect()
                    })
                    .collect();
                let sq = u.iter().flatten().fold(c(0.0), |acc, &v| acc + v * v);
                let scale = if sq.v > 0.0 {
                    let s = c(1.0) - c(eta * lambda) / sq.sqrt();
                    if s.v > 0.0 {
                        s
                    } else {
                        c(0.0)
                    }
                } else {
                    c(0.0)
                };
                for (i, row) in u.into_iter().enumerate() {
                    beta[g * m + i] = row.into_iter().map(|v| v * scale).collect();
                }
            }
            for o in 0..outs {
                bias[o] = bias[o] - c(eta) * grad_bias[o];
            }
        }
        let n_meta = meta.x.len();
        let shares = match &meta.shares {
            Some(s) => s.clone(),
            None => vec![1.0 / n_meta as f64; n_meta],
        };
        (0..n_meta).fold(c(0.0), |acc, i| {
            acc + c(shares[i]) * loss(kind, &outputs(&meta.x[i], &beta, &bias), &meta.y[i]).0
        })
    }
}

#[test]
fn exact_hypergradient_matches_independent_forward_mode() {
    independent_forward_mode(setup);
}

/// The same on the sparse B-spline design: reverse mode through the sparse products against
/// forward mode on the dense matrix.
#[test]
fn sparse_design_hypergradient_matches_independent_forward_mode() {
    independent_forward_mode(|task, lambda, seed| {
        spline_setup(task, lambda, seed, DesignStorage::Sparse)
    });
}

/// The same with each step fused into one pass over the rows each way.
#[test]
fn fused_steps_hypergradient_matches_independent_forward_mode() {
    independent_forward_mode(|task, lambda, seed| {
        spline_setup(task, lambda, seed, DesignStorage::Fused)
    });
}

fn independent_forward_mode(make: fn(Task, f64, u64) -> Setup) {
    use forward_mode::{c, Data, Dual, Kind, Net};
    let rows = |t: &Tensor| t.to_vec2::<f64>().unwrap();
    let data = |p: &Problem, balanced: bool| Data {
        x: rows(p.design()),
        y: rows(p.target()),
        shares: balanced.then(|| forward_mode::balanced_shares(&rows(p.target()))),
    };
    for (task, lambda, kind, balanced) in [
        (Task::Regression, 0.8, Kind::Squared, false),
        (Task::Binary, 0.3, Kind::Logistic, false),
        (Task::Binary, 0.3, Kind::Logistic, true),
        (Task::Multiclass { classes: 3 }, 0.5, Kind::Softmax, false),
        (Task::Multiclass { classes: 3 }, 0.5, Kind::Softmax, true),
    ] {
        let k = 10;
        let mut s = make(task, lambda, 15);
        if balanced {
            s.problem.meta = s.problem.meta.class_balanced().unwrap();
        }
        let (train, meta) = (
            data(&s.problem.train, false),
            data(&s.problem.meta, balanced),
        );
        let params = flatten(&s.net.tensors());
        let beta0 = rows(&s.start.beta);
        let bias0 = s.start.bias.to_vec1::<f64>().unwrap();
        let step = (s.problem.step.eta, s.problem.step.lambda, P);
        // One forward pass per parameter, seeding that parameter's tangent.
        let forward: Vec<f64> = (0..params.len())
            .map(|seed| {
                let d = |i: usize| Dual {
                    v: params[i],
                    d: f64::from(i == seed),
                };
                let net = Net {
                    b1: (0..HIDDEN).map(d).collect(),
                    w1: (HIDDEN..2 * HIDDEN).map(d).collect(),
                    b2: d(2 * HIDDEN),
                    w2: (2 * HIDDEN + 1..3 * HIDDEN + 1).map(d).collect(),
                };
                let beta = beta0
                    .iter()
                    .map(|r| r.iter().map(|&v| c(v)).collect())
                    .collect();
                let bias = bias0.iter().map(|&v| c(v)).collect();
                forward_mode::meta_loss(&kind, &train, &meta, &net, beta, bias, step, k).d
            })
            .collect();
        let hg = hypergradient(&s.problem, &s.start, &s.net, HypergradOptions::new(k)).unwrap();
        let err = relative_error(&flatten(&hg.grads), &forward);
        println!(
            "{task} K={k}, balanced meta {balanced}: reverse mode vs independent forward mode \
             {err:.2e}"
        );
        assert!(err <= 1e-10, "{task}: relative error {err:e}");
    }
}

const TASKS: [(Task, f64); 3] = [
    (Task::Regression, 0.8),
    (Task::Binary, 0.3),
    (Task::Multiclass { classes: 3 }, 0.5),
];

fn grads_of(s: &Setup, opts: HypergradOptions) -> (f64, Vec<f64>) {
    let hg = hypergradient(&s.problem, &s.start, &s.net, opts).unwrap();
    (hg.meta_loss, flatten(&hg.grads))
}

#[test]
fn exact_recompute_equals_exact() {
    for (task, lambda) in TASKS {
        for k in [1, 5, 20] {
            for detach in [false, true] {
                let s = setup(task, lambda, 15);
                let opts = HypergradOptions::new(k).detach_weight_input(detach);
                let (f_exact, exact) = grads_of(&s, opts);
                let (f_re, re) = grads_of(&s, opts.mode(HypergradMode::ExactRecompute));
                let err = relative_error(&re, &exact);
                println!("{task} K={k} detach={detach}: recompute vs exact {err:.2e}");
                assert!(err <= 1e-10, "{task} K={k} detach={detach}: {err:e}");
                assert!((f_exact - f_re).abs() <= 1e-14 * f_exact.abs().max(1.0));
            }
        }
    }
}

#[test]
fn exact_recompute_matches_finite_differences() {
    for (task, lambda) in TASKS {
        let s = setup(task, lambda, 15);
        let k = 5;
        let (_, re) = grads_of(
            &s,
            HypergradOptions::new(k).mode(HypergradMode::ExactRecompute),
        );
        let err = relative_error(&re, &finite_differences(&s, k, None));
        println!("{task} K={k}: recompute vs finite differences {err:.2e}");
        assert!(err <= 1e-6, "{task}: {err:e}");
    }
}

#[test]
fn truncated_through_all_steps_is_exact() {
    for (task, lambda) in TASKS {
        let s = setup(task, lambda, 15);
        let (_, exact) = grads_of(&s, HypergradOptions::new(5));
        let (_, full) = grads_of(
            &s,
            HypergradOptions::new(5).mode(HypergradMode::Truncated(5)),
        );
        assert!(relative_error(&full, &exact) <= 1e-12, "{task}");
    }
}

/// Truncated(t) after K steps is the exact derivative of the last t steps with their start
/// β_{K−t} held at its value: checked by finite differences of that map.
#[test]
fn truncated_matches_finite_differences_of_the_last_steps() {
    let (k, t) = (8, 3);
    for (task, lambda) in TASKS {
        let s = setup(task, lambda, 15);
        let (_, truncated) = grads_of(
            &s,
            HypergradOptions::new(k).mode(HypergradMode::Truncated(t)),
        );
        let mut c = s.start.clone();
        for _ in 0..k - t {
            c = step(&s, &c).detach();
        }
        let shifted = Setup {
            problem: s.problem.clone(),
            start: c,
            net: s.net.clone(),
        };
        let err = relative_error(&truncated, &finite_differences(&shifted, t, None));
        println!("{task} K={k} truncated({t}): vs finite differences {err:.2e}");
        assert!(err <= 1e-6, "{task}: {err:e}");
        let (_, exact) = grads_of(&s, HypergradOptions::new(k));
        assert!(
            relative_error(&truncated, &exact) > 1e-3,
            "{task}: truncation changed nothing"
        );
    }
}

#[test]
fn one_step_is_one_detached_step() {
    let s = setup(Task::Regression, 0.8, 15);
    let (f1, one) = grads_of(&s, HypergradOptions::new(20).mode(HypergradMode::OneStep));
    let (f2, detached) = grads_of(&s, HypergradOptions::new(1).detach_weight_input(true));
    assert_eq!(one, detached);
    assert_eq!(f1, f2);
}

#[test]
fn bad_truncation_depth_is_refused() {
    let s = setup(Task::Regression, 0.8, 15);
    for t in [0, 6] {
        let opts = HypergradOptions::new(5).mode(HypergradMode::Truncated(t));
        let err = hypergradient(&s.problem, &s.start, &s.net, opts).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

/// A strongly convex inner problem (ridge) whose active set settles: the setting in which the
/// unrolled hypergradient has the implicit one as its K → ∞ limit. The step is longer than in
/// [`setup`] because the intercept has no ridge and would otherwise converge slowly.
fn convex_setup(task: Task) -> Setup {
    let (lambda, ridge, eta) = match task {
        Task::Regression => (0.8, 2.0, 0.3),
        // Logistic and softmax curvature is at most ¼: weaker penalties, a longer step.
        _ => (0.1, 0.3, 2.0),
    };
    let mut s = setup(task, lambda, 15);
    s.problem.step.ridge = ridge;
    s.problem.step.eta = eta;
    s
}

/// The meta loss at the converged inner solution, for finite differences of the implicit mode.
fn converged_meta_loss(s: &Setup, net: &WeightNet) -> f64 {
    let fixed = s.problem.solve(&s.start, net, 100_000, 1e-15).unwrap();
    s.problem
        .meta
        .mean_loss(&fixed.coefficients)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn implicit_matches_finite_differences_of_the_converged_meta_loss() {
    for (task, _) in TASKS {
        let s = convex_setup(task);
        let hg = hypergradient(
            &s.problem,
            &s.start,
            &s.net,
            HypergradOptions::new(1).mode(HypergradMode::Implicit),
        )
        .unwrap();
        let report = hg.implicit.expect("implicit mode reports its convergence");
        assert!(report.fixed_point_residual <= 1e-12, "{report:?}");
        assert!(report.cg_residual <= 1e-10, "{report:?}");
        assert!(
            report.active_groups > 0 && report.active_groups < P,
            "{task}: need zero and active groups at the solution, {report:?}"
        );
        let base = flatten(&s.net.tensors());
        let eps = 1e-5;
        let fd: Vec<f64> = (0..base.len())
            .map(|i| {
                let mut plus = base.clone();
                plus[i] += eps;
                let mut minus = base.clone();
                minus[i] -= eps;
                (converged_meta_loss(&s, &with_params(&s.net, &plus))
                    - converged_meta_loss(&s, &with_params(&s.net, &minus)))
                    / (2.0 * eps)
            })
            .collect();
        let err = relative_error(&flatten(&hg.grads), &fd);
        println!("{task}: implicit vs finite differences {err:.2e}, {report:?}");
        assert!(err <= 1e-6, "{task}: {err:e}");
        assert!((hg.meta_loss - converged_meta_loss(&s, &s.net)).abs() <= 1e-10);
    }
}

/// Started at the inner solution (as at a fixed point of training), the K-step hypergradient is
/// a partial sum of the series whose limit the implicit mode computes.
#[test]
fn exact_converges_to_implicit_as_k_grows() {
    for (task, _) in TASKS {
        for detach in [false, true] {
            let mut s = convex_setup(task);
            s.start = s
                .problem
                .solve(&s.start, &s.net, 100_000, 1e-14)
                .unwrap()
                .coefficients;
            let opts = HypergradOptions::new(1).detach_weight_input(detach);
            let (_, reference) = grads_of(&s, opts.mode(HypergradMode::Implicit));
            let distances: Vec<f64> = [1, 5, 20, 80]
                .iter()
                .map(|&k| {
                    let (_, exact) = grads_of(&s, HypergradOptions { k, ..opts });
                    relative_error(&exact, &reference)
                })
                .collect();
            println!(
                "{task} detach={detach}: exact(K) vs implicit, K = 1, 5, 20, 80: {distances:?}"
            );
            assert!(
                distances.windows(2).all(|w| w[1] < w[0]),
                "{task} detach={detach}: {distances:?}"
            );
            assert!(distances[3] < 1e-4, "{task} detach={detach}: {distances:?}");
        }
    }
}

#[test]
fn implicit_refuses_an_unsymmetric_system() {
    let mut s = convex_setup(Task::Regression);
    s.problem.step.normalize_weights = true;
    let opts = HypergradOptions::new(1).mode(HypergradMode::Implicit);
    let err = hypergradient(&s.problem, &s.start, &s.net, opts).unwrap_err();
    assert!(err.to_string().contains("symmetric"), "{err}");
    // Detached, the weights are constants of β and the system is symmetric again.
    let hg = hypergradient(&s.problem, &s.start, &s.net, opts.detach_weight_input(true)).unwrap();
    assert!(hg.implicit.is_some_and(|r| r.cg_residual <= 1e-10));
}

#[test]
fn check_gradient_passes_every_mode_and_names_every_tensor() {
    use metaadd::hypergrad::{check_gradient, CheckOptions};
    let modes = [
        HypergradMode::Exact,
        HypergradMode::ExactRecompute,
        HypergradMode::Truncated(2),
        HypergradMode::OneStep,
        HypergradMode::Implicit,
    ];
    for (task, _) in TASKS {
        let s = convex_setup(task);
        for mode in modes {
            for detach in [false, true] {
                let opts = HypergradOptions::new(4)
                    .mode(mode)
                    .detach_weight_input(detach);
                let check =
                    check_gradient(&s.problem, &s.start, &s.net, opts, CheckOptions::default())
                        .unwrap();
                println!(
                    "{task} {mode} detach={detach}: {:.2e}",
                    check.relative_error
                );
                assert!(check.relative_error <= 1e-6, "{task} {mode}: {check:?}");
                let names: Vec<_> = check.tensors.iter().map(|t| t.name).collect();
                assert_eq!(names, metaadd::weightnet::PARAMETER_NAMES);
                assert!(check.tensors.iter().all(|t| t.checked == t.total));
            }
        }
    }
}

/// The same problem in f32.
fn to_f32(s: &Setup) -> Setup {
    let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let problem = |p: &Problem| Problem::new(&f32(p.design()), &f32(p.target()), p.loss()).unwrap();
    Setup {
        problem: Bilevel {
            train: problem(&s.problem.train),
            meta: problem(&s.problem.meta),
            step: s.problem.step,
        },
        start: Coefficients {
            beta: f32(&s.start.beta),
            bias: f32(&s.start.bias),
        },
        net: WeightNet::from_tensors(&s.net.tensors().map(|t| f32(&t))).unwrap(),
    }
}

#[test]
fn implicit_in_f32_agrees_with_f64_with_zero_groups() {
    for (task, _) in TASKS {
        let s = convex_setup(task);
        let opts = HypergradOptions::new(1).mode(HypergradMode::Implicit);
        let hg64 = hypergradient(&s.problem, &s.start, &s.net, opts).unwrap();
        let s32 = to_f32(&s);
        let hg32 = hypergradient(&s32.problem, &s32.start, &s32.net, opts).unwrap();
        let report = hg32.implicit.unwrap();
        assert!(
            report.active_groups < P,
            "{task}: want a zero group, {report:?}"
        );
        let g32: Vec<f64> = flatten(&hg32.grads.map(|t| t.to_dtype(DType::F64).unwrap()));
        let err = relative_error(&g32, &flatten(&hg64.grads));
        println!("{task}: implicit f32 vs f64 {err:.2e}, {report:?}");
        assert!(err <= 1e-3, "{task}: {err:e}");
    }
}

/// The exactness checks on the sparse B-spline design: central differences for every task
/// and K, and every hypergradient mode equal to the same mode on the dense design.
#[test]
fn sparse_design_hypergradient_matches_finite_differences() {
    // Twice the dense tests' λ: zero and active groups along every unroll on these designs.
    for (task, lambda) in TASKS {
        check_exact_on(
            |t, l, s| spline_setup(t, l, s, DesignStorage::Sparse),
            task,
            2.0 * lambda,
            15,
        );
    }
}

/// The same with each step fused into one pass over the rows each way.
#[test]
fn fused_steps_hypergradient_matches_finite_differences() {
    for (task, lambda) in TASKS {
        check_exact_on(
            |t, l, s| spline_setup(t, l, s, DesignStorage::Fused),
            task,
            2.0 * lambda,
            15,
        );
    }
}

#[test]
fn sparse_design_gives_the_dense_hypergradient_in_every_mode() {
    every_mode_as_dense(DesignStorage::Sparse, false);
}

/// Fused steps, also with normalised weights (whose mean the fused op's caller divides by).
#[test]
fn fused_steps_give_the_dense_hypergradient_in_every_mode() {
    every_mode_as_dense(DesignStorage::Fused, false);
    every_mode_as_dense(DesignStorage::Fused, true);
}

/// Every hypergradient mode on `storage`'s design equal to the same mode on the dense one.
fn every_mode_as_dense(storage: DesignStorage, normalize: bool) {
    for (task, lambda) in TASKS {
        let (mut sparse, mut dense) = (
            spline_setup(task, lambda, 15, storage),
            spline_setup(task, lambda, 15, DesignStorage::Dense),
        );
        sparse.problem.step.normalize_weights = normalize;
        dense.problem.step.normalize_weights = normalize;
        let fused = storage == DesignStorage::Fused;
        assert!(sparse.problem.train.products().sparse().is_some());
        assert_eq!(
            sparse.problem.train.products().fused_steps().is_some(),
            fused
        );
        assert!(dense.problem.train.products().sparse().is_none());
        for opts in [
            HypergradOptions::new(5),
            HypergradOptions::new(5).detach_weight_input(true),
            HypergradOptions::new(5).mode(HypergradMode::ExactRecompute),
            HypergradOptions::new(8).mode(HypergradMode::Truncated(3)),
            HypergradOptions::new(5).mode(HypergradMode::OneStep),
            HypergradOptions::new(5).mode(HypergradMode::Implicit),
            HypergradOptions::new(5)
                .mode(HypergradMode::Implicit)
                .detach_weight_input(true),
        ] {
            if normalize && opts.mode == HypergradMode::Implicit && !opts.detach_weight_input {
                continue; // refused: not a symmetric system
            }
            let (fs, gs) = grads_of(&sparse, opts);
            let (fd, gd) = grads_of(&dense, opts);
            let err = relative_error(&gs, &gd);
            println!("{task} {opts:?}: {storage} vs dense {err:.2e}");
            assert!(err <= 1e-10, "{task} {opts:?}: {err:e}");
            assert!((fs - fd).abs() <= 1e-12 * fd.abs().max(1.0));
        }
    }
}
