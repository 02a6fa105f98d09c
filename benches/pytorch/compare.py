#!/usr/bin/env python3
"""One outer iteration of MAM training: metaadd (Rust, candle) against PyTorch at equal threads.

How to run, from the repository root (PyTorch goes into a throwaway venv outside the repo):

    python3 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install torch   # the PyPI wheel; `import torch` loads its nvidia-*
                                            # libraries even on a CPU-only machine, so install
                                            # with its dependencies (about 5 GB)
    cargo build --release --example bench_outer
    /tmp/torch-venv/bin/python benches/pytorch/compare.py \
        --rust after=target/release/examples/bench_outer

`--rust LABEL=PATH` may be repeated, e.g. `--rust before=/tmp/base/target/release/examples/bench_outer`
for the example built from an older commit (see RESULTS.md). `--repeat R` runs the whole grid R
times, alternating Rust and PyTorch, and reports the median of the per-run medians with their
range. `--quick` is a small smoke run. `--out FILE` keeps the per-run CSV, and
`--tabulate FILE...` prints the table again from such files (pooling their runs).

What is timed (both sides, same inputs): the Rust example builds the MAM paper's regression
protocol (noise B; n = 2000 training and 2000 meta rows; p = 100 features, m = 10
orthonormalised cubic B-spline columns each, P = 1000; weight net h = 100; squared loss;
λ = 0.02, η = 1/L), takes 20 training iterations, and writes that state (designs, targets, β, b,
φ, η, λ) with `--dump`. Both sides then time, from that state, one outer iteration as
`Trainer::step` takes it:
  1. the exact hypergradient dF_K/dφ: K unrolled proximal-gradient steps
       f = Φβ + b, ℓ = ½(f − y)², w = V_φ(ℓ) (ℓ live in the graph),
       r = (f − y)·w/n, u = β − η Φᵀr, β⁺_j = u_j·relu(1 − ηλ/‖u_j‖), b⁺ = b − η Σr,
     then the meta loss mean ½(Φ_m β_K + b − y_m)² and reverse mode to φ only;
  2. one AdamW step on φ (lr 1e-3, weight decay 1e-4, betas 0.9/0.999, eps 1e-8);
  3. the real inner step with the weights held fixed, and the trainer's scalar metrics
     (hypergradient norm, training loss, mean weight, coefficient size, active groups).
Each (dtype, threads, K) starts a fresh copy of the state, takes 2 untimed iterations, then
times `--reps` iterations (the state advances) and reports the median.

Threads: `torch.set_num_threads(T)` (OpenMP and MKL). For Rust, `RAYON_NUM_THREADS=T` in the
child's environment: candle 0.11's gemm runs that many tasks on rayon's global pool (sized by the
same variable), its element-wise kernels use a pool of CANDLE_NUM_THREADS, which defaults to
it, and the fused weight net runs on the rayon pool.

The script also checks that both sides compute the same hypergradient: the Rust example writes
its exact K = 5 hypergradient at the dumped state (`--check 5`), and PyTorch's autograd through
the same unrolled steps must agree (f64: ~1e-12 relative; f32: ~1e-4).
"""

import argparse
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

NAMES = [
    "weightnet.fc1.bias",
    "weightnet.fc1.weight",
    "weightnet.fc2.bias",
    "weightnet.fc2.weight",
]
SAFETENSORS_DTYPES = {"F32": np.float32, "F64": np.float64}
TORCH_DTYPES = {"f32": torch.float32, "f64": torch.float64}


def read_safetensors(path):
    """name -> float64 torch tensor (values exactly as stored)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype=SAFETENSORS_DTYPES[info["dtype"]])
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).astype(np.float64))
    return out


class Problem:
    def __init__(self, state, dtype):
        def cast(t):
            return t.to(dtype).contiguous()

        self.x_train, self.y_train = cast(state["train.design"]), cast(state["train.target"])
        self.x_meta, self.y_meta = cast(state["meta.design"]), cast(state["meta.target"])
        self.eta = float(state["eta"][0])
        self.lam = float(state["lambda"][0])
        self.p = int(state["n_features"][0])
        self.beta0, self.bias0 = cast(state["beta"]), cast(state["bias"])
        self.phi0 = [cast(state[n]) for n in NAMES]


def weight_net(losses, phi):
    """sigma(W2 relu(W1 l + b1) + b2), nn.Linear shapes, as metaadd's tensor-op path."""
    b1, w1, b2, w2 = phi
    n = losses.shape[0]
    hidden = torch.relu(losses.reshape(n, 1) * w1.reshape(1, -1) + b1.unsqueeze(0))
    return torch.sigmoid(hidden @ w2.t() + b2).reshape(n)


def inner_step(pb, beta, bias, f, weights):
    """T(beta) with given weights, as metaadd's InnerStep::step_from_outputs."""
    n = f.shape[0]
    residual = ((f - pb.y_train) * weights.unsqueeze(1)) * (1.0 / n)
    grad_beta = pb.x_train.t() @ residual
    grad_bias = residual.sum(0)
    u = beta - pb.eta * grad_beta
    groups = u.reshape(pb.p, -1)
    norms = groups.square().sum(-1, keepdim=True).clamp_min(1e-30).sqrt()
    scale = torch.relu(1.0 - pb.eta * pb.lam / norms)
    return (groups * scale).reshape(u.shape), bias - pb.eta * grad_bias


def meta_objective(pb, beta, bias, phi, k):
    """F_K(phi): K steps with the weight net fed each step's own (live) losses."""
    for _ in range(k):
        f = pb.x_train @ beta + bias
        losses = 0.5 * (f - pb.y_train).square().squeeze(1)
        beta, bias = inner_step(pb, beta, bias, f, weight_net(losses, phi))
    f = pb.x_meta @ beta + bias
    return (0.5 * (f - pb.y_meta).square()).mean()


class State:
    def __init__(self, pb):
        self.beta, self.bias = pb.beta0.clone(), pb.bias0.clone()
        self.phi = [p.clone().requires_grad_(True) for p in pb.phi0]
        self.opt = torch.optim.AdamW(self.phi, lr=1e-3, weight_decay=1e-4)


def outer_iteration(pb, st, k):
    meta = meta_objective(pb, st.beta, st.bias, st.phi, k)
    grads = torch.autograd.grad(meta, st.phi)
    norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads))
    for p, g in zip(st.phi, grads):
        p.grad = g
    st.opt.step()
    with torch.no_grad():
        f = pb.x_train @ st.beta + st.bias
        losses = 0.5 * (f - pb.y_train).square().squeeze(1)
        weights = weight_net(losses, st.phi)
        train_loss, mean_weight = losses.mean().item(), weights.mean().item()
        st.beta, st.bias = inner_step(pb, st.beta, st.bias, f, weights)
        size = st.beta.abs().sum().item() + st.bias.abs().sum().item()
        active = int((st.beta.reshape(pb.p, -1).square().sum(1) > 0).sum())
    if not math.isfinite(norm + train_loss + mean_weight + size) or active > pb.p:
        raise RuntimeError("outer iteration diverged")
    return meta.item()


def time_torch(state, dtype, threads, ks, reps, warmup):
    torch.set_num_threads(threads)
    pb = Problem(state, TORCH_DTYPES[dtype])
    rows = []
    for k in ks:
        st = State(pb)
        for _ in range(warmup):
            outer_iteration(pb, st, k)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            outer_iteration(pb, st, k)
            times.append(time.perf_counter() - t)
        rows.append((k, statistics.median(times), min(times), max(times)))
    return rows


def time_rust(binary, dtype, threads, ks, reps, warmup):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    env.pop("CANDLE_NUM_THREADS", None)
    cmd = [binary, "--dtype", dtype, "--k", ",".join(map(str, ks)), "--reps", str(reps),
           "--warmup", str(warmup)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split(",")
        if fields[0] != "rust":
            continue
        if int(fields[2]) != threads:
            raise RuntimeError(f"{binary} ran with {fields[2]} threads, not {threads}")
        rows.append((int(fields[3]), float(fields[4]), float(fields[5]), float(fields[6])))
    return rows


def check(state, dtype):
    """Relative errors of PyTorch's hypergradient against the one the Rust side wrote."""
    pb = Problem(state, TORCH_DTYPES[dtype])
    k = int(state["check.k"][0])
    st = State(pb)
    meta = meta_objective(pb, st.beta, st.bias, st.phi, k)
    grads = torch.autograd.grad(meta, st.phi)
    ours = torch.cat([g.double().flatten() for g in grads])
    theirs = torch.cat([state[f"check.grad.{n}"].flatten() for n in NAMES])
    grad_err = float((ours - theirs).norm() / theirs.norm())
    loss_err = abs(meta.item() - float(state["check.meta_loss"][0])) / abs(meta.item())
    return k, grad_err, loss_err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rust", action="append", default=[], metavar="LABEL=PATH",
                    help="a bench_outer binary to time (repeatable)")
    ap.add_argument("--dtypes", default="f32,f64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--k", default="1,5,20")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="runs of the whole grid")
    ap.add_argument("--quick", action="store_true", help="one thread, K = 1, 3 reps")
    ap.add_argument("--out", help="also write the per-run CSV here")
    ap.add_argument("--tabulate", nargs="+", metavar="CSV",
                    help="only print the table from CSV files written with --out")
    args = ap.parse_args()
    if args.tabulate:
        return tabulate(args.tabulate)
    if not args.rust:
        ap.error("give at least one --rust LABEL=PATH (cargo build --release --example bench_outer)")
    rust = [tuple(r.split("=", 1)) for r in args.rust]
    dtypes = args.dtypes.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    ks = [int(k) for k in args.k.split(",")]
    if args.quick:
        threads, ks, args.reps = [1], [1], 3

    tmp = tempfile.mkdtemp(prefix="metaadd-compare-")
    states = {}
    for dtype in dtypes:
        path = os.path.join(tmp, f"state-{dtype}.safetensors")
        subprocess.run([rust[0][1], "--dtype", dtype, "--k", "1", "--reps", "1", "--warmup", "0",
                        "--dump", path, "--check", "5"],
                       env=dict(os.environ, RAYON_NUM_THREADS="1"), check=True,
                       capture_output=True)
        states[dtype] = read_safetensors(path)
        k, grad_err, loss_err = check(states[dtype], dtype)
        print(f"# check {dtype}: K = {k} hypergradient, PyTorch vs Rust relative error "
              f"{grad_err:.2e} (gradient), {loss_err:.2e} (meta loss)", flush=True)

    # (label, dtype, threads, K) -> per-run medians
    medians = {}
    lines = ["side,dtype,threads,K,median_s,min_s,max_s,run"]
    for run in range(args.repeat):
        for dtype in dtypes:
            for t in threads:
                sides = [(label, lambda b=binary: time_rust(b, dtype, t, ks, args.reps,
                                                            args.warmup))
                         for label, binary in rust]
                sides.append(("pytorch", lambda: time_torch(states[dtype], dtype, t, ks,
                                                            args.reps, args.warmup)))
                if run % 2:
                    sides.reverse()
                for label, timer in sides:
                    for k, med, lo, hi in timer():
                        medians.setdefault((label, dtype, t, k), []).append(med)
                        line = f"{label},{dtype},{t},{k},{med:.6f},{lo:.6f},{hi:.6f},{run}"
                        lines.append(line)
                        print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")

    print()
    print_table(medians, [label for label, _ in rust], dtypes, threads, ks)


def print_table(medians, labels, dtypes, threads, ks):
    """Markdown table: median of the per-run medians (range over runs), Rust / PyTorch ratios."""
    head = ["dtype", "threads", "K", "PyTorch s"] + [f"Rust {l} s" for l in labels]
    head += [f"{l} / PyTorch" for l in labels]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def cell(values):
        m = statistics.median(values)
        if len(values) == 1:
            return f"{m:.4f}", m
        return f"{m:.4f} ({min(values):.4f}–{max(values):.4f})", m

    for dtype in dtypes:
        for t in threads:
            for k in ks:
                torch_txt, torch_s = cell(medians[("pytorch", dtype, t, k)])
                row = [dtype, str(t), str(k), torch_txt]
                ratios = []
                for label in labels:
                    txt, s = cell(medians[(label, dtype, t, k)])
                    row.append(txt)
                    ratios.append(f"{s / torch_s:.2f}")
                print("| " + " | ".join(row + ratios) + " |")


def tabulate(paths):
    """The table from CSV files written with --out (runs of several invocations pooled)."""
    medians, labels, dtypes, threads, ks = {}, [], [], [], []
    for path in paths:
        with open(path) as f:
            next(f)
            for line in f:
                label, dtype, t, k, med = line.strip().split(",")[:5]
                t, k = int(t), int(k)
                medians.setdefault((label, dtype, t, k), []).append(float(med))
                for seen, v in ((labels, label), (dtypes, dtype), (threads, t), (ks, k)):
                    if v not in seen and v != "pytorch":
                        seen.append(v)
    print_table(medians, labels, dtypes, sorted(threads), sorted(ks))


if __name__ == "__main__":
    sys.exit(main())
