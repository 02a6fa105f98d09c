//! Properties of the building blocks over random inputs (proptest, bounded case counts):
//! the basis is a partition of unity and clamps outside the training range, the group
//! soft-threshold is the exact prox of the group lasso, and every loss's closed-form
//! derivative matches central finite differences of its value.

use candle_core::{DType, Device, Tensor};
use metaadd::inner::group_soft_threshold;
use metaadd::{BasisSpec, Loss, SplineBasis};
use proptest::prelude::*;

/// A fixed seed, so that CI sees the same cases every run (set `PROPTEST_CASES` for more).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261123),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn spec() -> impl Strategy<Value = BasisSpec> {
    prop_oneof![
        (4usize..12).prop_map(BasisSpec::bspline),
        (2usize..8).prop_map(BasisSpec::bernstein),
    ]
    .prop_flat_map(|s| any::<bool>().prop_map(move |o| s.orthonormalized(o)))
}

/// Training values of one feature: a random location and scale, some repeated values.
fn training_column() -> impl Strategy<Value = Vec<f64>> {
    (
        -1e3f64..1e3,
        1e-3f64..1e3,
        prop::collection::vec(-1.0f64..1.0, 30..120),
    )
        .prop_map(|(loc, scale, mut v)| {
            // Ties, as real data have.
            for i in (0..v.len()).step_by(7) {
                v[i] = v[0];
            }
            v.iter().map(|u| loc + scale * u).collect()
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_raw_basis_is_a_nonnegative_partition_of_unity(
        spec in spec(),
        x in training_column(),
        queries in prop::collection::vec(-2.0f64..2.0, 1..20),
    ) {
        let basis = SplineBasis::fit(spec, &x, 1).unwrap();
        let (lo, hi) = basis.range(0).unwrap();
        // Inside and outside the training range.
        let q: Vec<f64> = queries.iter().map(|t| lo + (hi - lo) * (t + 1.0) / 2.0 * 1.5 - 0.25 * (hi - lo)).collect();
        let raw = basis.raw_feature(0, &q).unwrap();
        for row in raw.chunks_exact(spec.n_basis + 1) {
            let sum: f64 = row.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-12, "row sums to {sum}");
            prop_assert!(row.iter().all(|&b| b >= -1e-15), "negative basis value in {row:?}");
        }
    }

    #[test]
    fn values_outside_the_training_range_are_clamped_to_its_ends(
        spec in spec(),
        x in training_column(),
        beyond in 1e-6f64..1e6,
    ) {
        let basis = SplineBasis::fit(spec, &x, 1).unwrap();
        let (lo, hi) = basis.range(0).unwrap();
        let at = |v: f64| basis.transform_feature(0, &[v]).unwrap();
        // Every value beyond an end gives the same row, bit for bit ...
        prop_assert_eq!(at(hi + beyond), at(hi + 2.0 * beyond + 1.0));
        prop_assert_eq!(at(lo - beyond), at(lo - 2.0 * beyond - 1.0));
        // ... the row at the end itself (up to the rounding of the end's own standardisation).
        for (a, b) in at(hi + beyond).iter().zip(at(hi)) {
            prop_assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
        for (a, b) in at(lo - beyond).iter().zip(at(lo)) {
            prop_assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn the_group_soft_threshold_is_the_group_lasso_prox(
        groups in 1usize..6,
        m in 1usize..5,
        outputs in 1usize..3,
        seed in any::<u64>(),
        threshold in 0.0f64..2.0,
    ) {
        let dev = Device::Cpu;
        let n = groups * m * outputs;
        let mut state = seed | 1;
        let values: Vec<f64> = (0..n)
            .map(|_| {
                // xorshift: a spread of group norms around the threshold.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 20_001) as f64 / 10_000.0 - 1.0
            })
            .collect();
        let u = Tensor::from_vec(values.clone(), (groups * m, outputs), &dev).unwrap();
        let out = group_soft_threshold(&u, groups, threshold).unwrap();
        let out: Vec<f64> = out.flatten_all().unwrap().to_vec1().unwrap();
        let block = m * outputs;
        for g in 0..groups {
            let (a, b) = (&values[g * block..(g + 1) * block], &out[g * block..(g + 1) * block]);
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let (before, after) = (norm(a), norm(b));
            if before <= threshold {
                // Exact zeros below the threshold.
                prop_assert!(b.iter().all(|&x| x == 0.0), "group {g}: {b:?}");
            } else {
                // Shrunk by exactly the threshold, in the same direction.
                prop_assert!((after - (before - threshold)).abs() <= 1e-12 * (1.0 + before));
                for (x, y) in a.iter().zip(b) {
                    prop_assert!((y - x * (1.0 - threshold / before)).abs() <= 1e-12);
                }
            }
            prop_assert!(after <= before + 1e-15);
        }
        // Idempotent at zero: zero stays zero, with any threshold.
        let zero = Tensor::zeros((groups * m, outputs), DType::F64, &dev).unwrap();
        let z = group_soft_threshold(&zero, groups, threshold).unwrap();
        prop_assert_eq!(z.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap(), 0.0);
    }

    #[test]
    fn loss_derivatives_match_central_differences(
        which in 0usize..4,
        delta in 0.1f64..3.0,
        f in prop::collection::vec(-6.0f64..6.0, 3),
        y in prop::collection::vec(-3.0f64..3.0, 1),
        class in 0usize..3,
    ) {
        let dev = Device::Cpu;
        let (loss, outputs, target) = match which {
            0 => (Loss::Squared, 1, vec![y[0]]),
            1 => (Loss::Huber { delta }, 1, vec![y[0]]),
            2 => (Loss::Logistic, 1, vec![f64::from(u8::from(y[0] > 0.0))]),
            _ => (Loss::Softmax, 3, (0..3).map(|c| f64::from(u8::from(c == class))).collect()),
        };
        // Huber's kink: keep the residual away from ±δ, where one side's difference would
        // straddle it.
        if let Loss::Huber { delta } = loss {
            prop_assume!(((f[0] - y[0]).abs() - delta).abs() > 1e-3);
        }
        let f = &f[..outputs];
        let y = Tensor::from_vec(target, (1, outputs), &dev).unwrap();
        let value = |f: &[f64]| -> f64 {
            let t = Tensor::from_vec(f.to_vec(), (1, outputs), &dev).unwrap();
            loss.value(&t, &y).unwrap().to_vec1::<f64>().unwrap()[0]
        };
        let ft = Tensor::from_vec(f.to_vec(), (1, outputs), &dev).unwrap();
        let analytic: Vec<f64> = loss.derivative(&ft, &y).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-5;
        for c in 0..outputs {
            let (mut up, mut down) = (f.to_vec(), f.to_vec());
            up[c] += h;
            down[c] -= h;
            let numeric = (value(&up) - value(&down)) / (2.0 * h);
            let err = (numeric - analytic[c]).abs() / (1.0 + analytic[c].abs());
            prop_assert!(err < 1e-6, "{loss:?} output {c}: analytic {} vs numeric {numeric}", analytic[c]);
        }
    }
}
