//! Forward + backward of the weight net alone: the fused op against the tensor-op path, at
//! n rows (2000 unless given) and h = 100 hidden units, f32 and f64.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release --example bench_weightnet [-- n]
//! ```
//!
//! Prints `path,dtype,threads,n,h,median_us,min_us`.

use candle_core::{DType, Device, Tensor, Var};
use metaadd::WeightNet;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let n = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 2000,
    };
    let (h, reps) = (100, 200);
    let threads = candle_core::utils::get_num_threads();
    for dtype in [DType::F32, DType::F64] {
        let net = WeightNet::new(h, 1, dtype, &Device::Cpu)?;
        let losses: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 * 0.05).collect();
        let losses = Var::from_tensor(&Tensor::new(losses, &Device::Cpu)?.to_dtype(dtype)?)?;
        let c = Tensor::ones(n, dtype, &Device::Cpu)?;
        for fused in [true, false] {
            let mut times = Vec::with_capacity(reps);
            for _ in 0..reps + 5 {
                let t = Instant::now();
                let w = if fused {
                    net.forward(losses.as_tensor())?
                } else {
                    net.forward_reference(losses.as_tensor())?
                };
                let grads = (w * &c)?.sum_all()?.backward()?;
                std::hint::black_box(grads.get(losses.as_tensor()));
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let mut times = times.split_off(5);
            times.sort_by(f64::total_cmp);
            println!(
                "{},{},{threads},{n},{h},{:.1},{:.1}",
                if fused { "fused" } else { "tensor-ops" },
                format!("{dtype:?}").to_lowercase(),
                times[reps / 2],
                times[0]
            );
        }
    }
    Ok(())
}
