//! The machine's memory bandwidth, the roof that the products with the design Φ run under:
//! a STREAM-like triad `a = b + s·c` and a read-only sweep (a sum) over f32 arrays of
//! `--mib` MiB each (default 512, far beyond any cache), on 1 thread and on all of rayon's.
//! Prints the best of 5 repetitions as GB/s (10⁹ bytes: STREAM's convention), counting the
//! triad's three arrays (two read, one written) and the sweep's one.
//!
//! `cargo bench --bench bandwidth [-- --mib 512]`

use rayon::prelude::*;
use std::time::Instant;

const REPS: usize = 5;

fn best<F: FnMut()>(mut f: F) -> f64 {
    (0..REPS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut mib = 512usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--mib" {
            mib = args.next().and_then(|v| v.parse().ok()).unwrap_or(mib);
        }
    }
    let n = mib * (1 << 20) / 4;
    let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let c: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
    let mut a = vec![0f32; n];
    let bytes = (n * 4) as f64;
    println!("kernel,threads,gb_per_s  ({mib} MiB per array)");
    for threads in [1, rayon::current_num_threads()] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        let chunk = n.div_ceil(threads).max(1);
        let triad = pool.install(|| {
            best(|| {
                a.par_chunks_mut(chunk)
                    .zip(b.par_chunks(chunk).zip(c.par_chunks(chunk)))
                    .for_each(|(a, (b, c))| {
                        for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                            *a = b + 3.0 * c;
                        }
                    })
            })
        });
        let mut sink = 0f32;
        let read = pool.install(|| {
            best(|| {
                sink += a
                    .par_chunks(chunk)
                    .map(|a| {
                        // 32 partial sums (four AVX vectors), so that the adds are not the
                        // limit.
                        let mut s = [0f32; 32];
                        for block in a.chunks_exact(32) {
                            for (s, v) in s.iter_mut().zip(block) {
                                *s += v;
                            }
                        }
                        s.iter().sum::<f32>()
                    })
                    .sum::<f32>()
            })
        });
        println!("triad,{threads},{:.2}", 3.0 * bytes / triad / 1e9);
        println!("read,{threads},{:.2}", bytes / read / 1e9);
        std::hint::black_box(sink);
    }
}
