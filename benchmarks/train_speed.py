"""Side-by-side speed of `xor-gpu train` variants, interleaved in one run, as ratios.

These machines are noisy, so every variant runs in each round (round-robin), and the
table gives medians and each variant's ratio to the baseline (the package's defaults,
warm cache). It backs the choices the README states:
  - blas.ldflags empty (BLAS through numpy's C-API) against -lopenblas
  - PYTHONHASHSEED fixed by the CLI against a random seed per process
  - a warm compile cache against a cold one
  - optionally other devices: --devices opencl0:0

    python benchmarks/train_speed.py [--rounds 5] [--steps 60000] [--devices opencl0:0]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run(args, env, out):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xor_gpu", "train", *args, "--json", out], check=True,
                   env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(out, encoding="utf-8") as f:
        report = json.load(f)
    return {"wall": wall, "compile": report["compile_seconds"], "train": report["train_seconds"],
            "modules": report["new_compiled_modules"], "steps/s": report["steps_per_second"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60000)
    parser.add_argument("--devices", default="", help="extra devices, e.g. opencl0:0")
    opts = parser.parse_args()

    work = tempfile.mkdtemp(prefix="xor-bench-")
    warm = os.path.join(work, "warm")
    steps = ["--steps", str(opts.steps)]
    variants = {
        "cpu (defaults, warm)": (steps, {"XOR_GPU_COMPILEDIR": warm}),
        "cpu blas.ldflags=-lopenblas": (steps, {"XOR_GPU_COMPILEDIR": warm, "THEANO_FLAGS": "blas.ldflags=-lopenblas"}),
        "cpu random PYTHONHASHSEED": (steps, {"XOR_GPU_COMPILEDIR": warm, "XOR_GPU_REEXEC": "1",
                                               "PYTHONHASHSEED": "random"}),
        "cpu cold compile cache": (steps, None),  # a fresh compiledir every round
    }
    for device in filter(None, opts.devices.split(",")):
        variants[f"{device} (warm)"] = (steps + ["--device", device], {"XOR_GPU_COMPILEDIR": warm})
    if not any(os.path.exists(f"{d}/libopenblas.so") for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib")):
        print("libopenblas-dev not installed: skipping the -lopenblas variant")
        del variants["cpu blas.ldflags=-lopenblas"]

    for name, (args, env) in variants.items():  # warm-up round, not measured
        run(args, env or {"XOR_GPU_COMPILEDIR": os.path.join(work, "warmup-cold")}, os.path.join(work, "r.json"))
    samples = {name: [] for name in variants}
    for i in range(opts.rounds):
        for name, (args, env) in variants.items():
            if env is None:
                env = {"XOR_GPU_COMPILEDIR": os.path.join(work, f"cold{i}")}
            samples[name].append(run(args, env, os.path.join(work, "r.json")))
    shutil.rmtree(work)

    base = statistics.median(s["wall"] for s in samples["cpu (defaults, warm)"])
    print(f"{opts.rounds} rounds, {opts.steps:,} steps, medians; ratio = wall / baseline wall")
    print(f"{'variant':<30}{'wall s':>8}{'ratio':>7}{'compile s':>10}{'train s':>9}{'steps/s':>10}{'new modules':>12}")
    for name, runs in samples.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:<30}{med['wall']:>8.2f}{med['wall'] / base:>7.2f}{med['compile']:>10.2f}"
              f"{med['train']:>9.2f}{med['steps/s']:>10,.0f}{med['modules']:>12.0f}")


if __name__ == "__main__":
    main()
