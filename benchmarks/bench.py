#!/usr/bin/env python3
"""The speed of training XOR, every variant side by side in one run, as ratios.

    python benchmarks/bench.py [--rounds 5] [--steps 60000] [--only NAME,...]
                               [--ref-python PATH] [--json PATH] [--no-warm-up]

Each variant runs in a process of its own, once per round, the variants round-robin (and
the first of each round rotating), so that the load of a shared machine falls on all of
them alike; a warm-up round before them fills the compile and kernel caches. The table
gives the median of each measure over the rounds, and each variant's ratio to its base
(the median over rounds of variant / base in the same round). Variants (VARIANTS below):
the seed's configuration (one compiled call per step, Theano's BLAS through numpy's C-API)
is the base; the default trainer; the per-call loop under the default BLAS; the numpy
oracle in float32; JAX with the whole loop jitted and PyTorch eager (the same network,
initial weights, loss and SGD, run by --ref-python, skipped with the reason when that
Python cannot import them); cold compiles; OpenCL; and each PyTensor engine (and JAX on a
GPU) at one step per call against its default. See benchmarks/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SCHEMA = "xor_gpu.bench/1"
SEED_FLAGS = "blas.ldflags="  # Theano's BLAS through numpy's C-API, as the seed script ran
PER_CALL = ("--steps-per-call", "1")
OPENCL = ("--device", "opencl0:0")
RUN_TIMEOUT = 900  # seconds; a cold OpenCL run is the slowest, about 90 s here

# name: (what it is, how it runs, its base for the ratios, xor-gpu train arguments,
#        THEANO_FLAGS (None: unset), a fresh compile cache per run)
VARIANTS = {
    "baseline": ("the seed's: one call per step, blas.ldflags= (numpy C-API)", "train", "baseline", PER_CALL,
                 SEED_FLAGS, False),
    "default": ("xor-gpu train, defaults", "train", "baseline", (), None, False),
    "per-call": ("one call per step, default BLAS", "train", "baseline", PER_CALL, None, False),
    "oracle-f32": ("xor_gpu.oracle in float32 (numpy loop)", "oracle", "baseline", (), None, False),
    "jax": ("JAX, the whole loop jitted (lax.fori_loop)", "jax", "baseline", (), None, False),
    "torch": ("PyTorch CPU eager, autograd", "torch", "baseline", (), None, False),
    "cold-baseline": ("the seed's, empty compile cache", "train", "cold-baseline", PER_CALL, SEED_FLAGS, True),
    "cold-default": ("defaults, empty compile cache", "train", "cold-baseline", (), None, True),
    "opencl-baseline": ("the seed's on opencl0:0", "train", "opencl-baseline", OPENCL + PER_CALL, SEED_FLAGS, False),
    "opencl-default": ("defaults on opencl0:0", "train", "opencl-baseline", OPENCL, None, False),
}
# PyTensor's engines, each on its devices: one step per call (the base) and the engine's default
# (K steps per call: a chain or a scan, xor_gpu/engines.py). On a machine without a GPU the cuda
# pair is skipped with the reason (exit 3).
ENGINE_RUNS = {"pytensor": ("pytensor", "cpu"), "pytensor-numba": ("pytensor-numba", "cpu"),
               "pytensor-jax": ("pytensor-jax", "cpu"), "pytensor-jax-cuda": ("pytensor-jax", "cuda")}


def _engine_variants():
    for name, (engine, device) in ENGINE_RUNS.items():
        args = ("--engine", engine, "--device", device)
        yield f"{name}-per-call", (f"{engine} on {device}, one step per call", "train", f"{name}-per-call",
                                   args + PER_CALL, None, False)
        yield f"{name}-default", (f"{engine} on {device}, its default steps per call", "train", f"{name}-per-call",
                                  args, None, False)


VARIANTS.update(_engine_variants())
# OpenBLAS's kernel families (xor_gpu/host.py pins one per architecture): `default` under each,
# chosen by the user's variable, which wins over the package's choice. Families the CPU lacks
# crash OpenBLAS. x86-64's, then aarch64's (NEON: ARMV8 to THUNDERX2T99; SVE: the last two).
KERNELS = ("Haswell", "Sandybridge", "Nehalem", "Core2", "Prescott", "SkylakeX",
           "ARMV8", "NEOVERSEN1", "CORTEXA57", "THUNDERX2T99", "NEOVERSEV1", "NEOVERSEN2")
VARIANTS.update({f"kernels-{k}": (f"defaults, OPENBLAS_CORETYPE={k}", "train", "default", (), None, False)
                 for k in KERNELS})
ENVIRONMENT = {f"kernels-{k}": {"OPENBLAS_CORETYPE": k} for k in KERNELS}  # variables a variant adds
MEASURES = ("steps_per_s", "wall_s", "compile_s", "train_s", "new_modules")
# (goal, variant, base, measure, the ratio variant / base must be: "min" at least / "max" at most)
SPEED_GOALS = (
    ("default trains >= 5x the seed's steps/s (CPU)", "default", "baseline", "steps_per_s", "min", 5.0),
    ("default trains >= 1.5x the seed's steps/s (OpenCL)", "opencl-default", "opencl-baseline", "steps_per_s",
     "min", 1.5),
    ("warm `xor-gpu train` wall <= 50% of the seed's", "default", "baseline", "wall_s", "max", 0.5),
    ("pytensor (C) default >= 3x its one step per call", "pytensor-default", "pytensor-per-call", "steps_per_s",
     "min", 3.0),
    ("pytensor-numba default >= 4x its one step per call", "pytensor-numba-default", "pytensor-numba-per-call",
     "steps_per_s", "min", 4.0),
    ("pytensor-jax default >= 50x its one step per call", "pytensor-jax-default", "pytensor-jax-per-call",
     "steps_per_s", "min", 50.0),
)
# (goal, variant, the variant whose final weights must be bitwise the same: same device and BLAS)
BITWISE_GOALS = (
    ("default bitwise equal to --steps-per-call 1, same BLAS (CPU)", "default", "per-call"),
    ("default bitwise equal to --steps-per-call 1 (OpenCL)", "opencl-default", "opencl-baseline"),
    *((f"{n} default bitwise equal to its one step per call", f"{n}-default", f"{n}-per-call")
      for n in ENGINE_RUNS),
)
CLOSE = 1e-6  # a default's predictions against one step per call, and against the seed's
# (variant, the variant whose predictions it must be CLOSE to)
CLOSE_GOALS = (("default", "baseline"),
               *((f"{n}-default", other) for n in ENGINE_RUNS for other in (f"{n}-per-call", "baseline")))


# ---- the workers: one training in this process, its result as one JSON line on stdout ----

def _weights(np):
    """The seed's initial weights and data in float32, from the oracle (numpy only)."""
    from xor_gpu.config import TrainConfig
    from xor_gpu.oracle import X, Y, initial_weights

    config = TrainConfig()
    w1, w2 = initial_weights(config.hidden, config.seed)
    f32 = np.float32
    return config, X.astype(f32), Y.astype(f32), w1.astype(f32), w2.astype(f32)


def work_oracle(steps):
    import numpy as np

    from xor_gpu import oracle
    from xor_gpu.config import TrainConfig

    config = TrainConfig(steps=steps)
    start = time.perf_counter()
    predictions, _, _ = oracle.train(config, dtype=np.float32)
    return {"train_s": time.perf_counter() - start, "predictions": predictions.tolist(),
            "versions": {"numpy": np.__version__}}


def work_jax(steps):
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np

    config, x, y, w1, w2 = _weights(np)
    lr = np.float32(config.lr)

    def forward(w):
        return jax.nn.sigmoid(jax.nn.sigmoid(x @ w[0]) @ w[1])

    def loss(w):
        return jnp.sum((y - forward(w)) ** 2)

    def step(_, w):
        g = jax.grad(loss)(w)
        return (w[0] - lr * g[0], w[1] - lr * g[1])

    w = (jnp.asarray(w1), jnp.asarray(w2))
    start = time.perf_counter()
    loop = jax.jit(lambda w: jax.lax.fori_loop(0, steps, step, w)).lower(w).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    final = jax.block_until_ready(loop(w))
    train_s = time.perf_counter() - start
    return {"compile_s": compile_s, "train_s": train_s,
            "predictions": np.asarray(forward(final), dtype=np.float64).ravel().tolist(),
            "versions": {"jax": jax.__version__, "numpy": np.__version__}}


def work_torch(steps):
    import numpy as np
    import torch

    config, x, y, w1, w2 = _weights(np)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    w1, w2 = torch.from_numpy(w1).requires_grad_(), torch.from_numpy(w2).requires_grad_()

    def forward():
        return torch.sigmoid(torch.sigmoid(x @ w1) @ w2)

    start = time.perf_counter()
    for _ in range(steps):
        g1, g2 = torch.autograd.grad(((y - forward()) ** 2).sum(), (w1, w2))
        with torch.no_grad():
            w1 -= config.lr * g1
            w2 -= config.lr * g2
    train_s = time.perf_counter() - start
    with torch.no_grad():
        predictions = forward().double().ravel().tolist()
    return {"train_s": train_s, "predictions": predictions,
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "threads": torch.get_num_threads()}}


WORKERS = {"oracle": work_oracle, "jax": work_jax, "torch": work_torch}


def worker_main(kind, steps):
    try:
        result = WORKERS[kind](steps)
    except ImportError as exc:
        print(f"cannot import it in {sys.executable}: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(result))
    return 0


# ---- the runs ----

class Skip(Exception):
    """This variant cannot run here (the reason is its message)."""


def has_steps_per_call(xor_gpu):
    proc = subprocess.run([*xor_gpu, "train", "--help"], capture_output=True, text=True)
    return "--steps-per-call" in proc.stdout


def package_path(work):
    """A folder holding only the xor_gpu package, for PYTHONPATH in another Python (whose numpy
    must not be shadowed by this environment's site-packages)."""
    import xor_gpu

    folder = os.path.join(work, "pythonpath")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        os.symlink(os.path.dirname(os.path.abspath(xor_gpu.__file__)), os.path.join(folder, "xor_gpu"))
    return folder


def _child(cmd, env):
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Skip(f"ran over {RUN_TIMEOUT} s") from None
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise Skip(f"exit {proc.returncode}: {last}")
    return wall, proc.stdout


def run_train(name, opts, work, round_no):
    _, _, _, args, flags, cold = VARIANTS[name]
    if not opts.steps_per_call:
        args = tuple(a for a in args if a not in PER_CALL)
    env = {k: v for k, v in os.environ.items() if k != "THEANO_FLAGS"}
    env.update(ENVIRONMENT.get(name, {}))
    if flags is not None:
        env["THEANO_FLAGS"] = flags
    if cold:
        env["XOR_GPU_COMPILEDIR"] = os.path.join(work, f"cold-{name}-{round_no}")
    out = os.path.join(work, "report.json")
    wall, _ = _child([*opts.xor_gpu, "train", "--steps", str(opts.steps), *args, "--json", out], env)
    with open(out, encoding="utf-8") as f:
        report = json.load(f)
    os.unlink(out)
    if cold:
        shutil.rmtree(env["XOR_GPU_COMPILEDIR"], ignore_errors=True)
    return {
        "wall_s": wall,
        "steps_per_s": report["steps_per_second"],
        "compile_s": report["compile_seconds"],
        "train_s": report["train_seconds"] + report["first_step_seconds"],
        "new_modules": report["new_compiled_modules"],
        "predictions": list(report["predictions"].values()),
        "weights_sha256": report["weights_sha256"],
        # every timing the report has (it may name more parts of the wall time than these)
        "report_seconds": {k: v for k, v in report.items() if k.endswith("_seconds")},
        "steps_per_call": report["config"].get("steps_per_call"),
        "blas": report.get("blas"),
        "versions": report["versions"],
    }


def run_worker(name, opts, work):
    kind = VARIANTS[name][1]
    python = sys.executable if kind == "oracle" else opts.ref_python
    env = {**os.environ, "PYTHONPATH": package_path(work)}
    wall, stdout = _child([python, os.path.abspath(__file__), "--worker", kind, str(opts.steps)], env)
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "steps_per_s": opts.steps / result["train_s"], **result}


def run_one(name, opts, work, round_no):
    if VARIANTS[name][1] == "train":
        return run_train(name, opts, work, round_no)
    return run_worker(name, opts, work)


# ---- the numbers ----

def summarize(samples, names):
    """Per variant: medians of each measure, median per-round ratios to its base, and the
    largest prediction difference to the baseline's."""
    baseline_pred = samples["baseline"][0]["predictions"] if samples.get("baseline") else None
    out = {}
    for name in names:
        runs = samples[name]
        base = VARIANTS[name][2]
        med = {m: statistics.median(r[m] for r in runs) for m in MEASURES
               if all(r.get(m) is not None for r in runs)}
        ratios = {}
        if samples.get(base):
            for m in ("steps_per_s", "wall_s"):
                pairs = zip(runs, samples[base])  # the same rounds (both ran from the first on)
                ratios[m] = statistics.median(r[m] / b[m] for r, b in pairs)
        diffs = None
        if baseline_pred:
            diffs = max(abs(p - q) for r in runs for p, q in zip(r["predictions"], baseline_pred))
        shas = sorted({r["weights_sha256"] for r in runs if "weights_sha256" in r})
        out[name] = {"what": VARIANTS[name][0], "base": base, "rounds": len(runs), "median": med, "ratio": ratios,
                     "max_abs_prediction_diff_to_baseline": diffs,
                     "predictions": runs[0]["predictions"], "weights_sha256": shas,
                     "runs": runs}
    return out


def goals(results):
    found = []
    for text, name, base, measure, sense, bound in SPEED_GOALS:
        ratio = results.get(name, {}).get("ratio", {}).get(measure) if base in results else None
        if ratio is not None:
            met = ratio >= bound if sense == "min" else ratio <= bound
            found.append({"goal": text, "value": ratio, "met": met})
    for text, name, other in BITWISE_GOALS:
        if name in results and other in results:
            a, b = results[name]["weights_sha256"], results[other]["weights_sha256"]
            found.append({"goal": text, "value": a == b and len(a) == 1, "met": a == b and len(a) == 1})
    for name, other in CLOSE_GOALS:
        if name in results and other in results:
            diff = max(abs(p - q) for r in results[name]["runs"] for q_run in results[other]["runs"]
                       for p, q in zip(r["predictions"], q_run["predictions"]))
            found.append({"goal": f"{name}'s predictions within {CLOSE:g} of {other}'s", "value": diff,
                          "met": diff <= CLOSE})
    return found


# (header, width, the value in a summarized variant, its format)
COLUMNS = (
    ("runs", 5, lambda r: r["rounds"], "d"),
    ("steps/s", 12, lambda r: r["median"].get("steps_per_s"), ",.0f"),
    ("x base", 8, lambda r: r["ratio"].get("steps_per_s"), ".2f"),
    ("wall s", 8, lambda r: r["median"].get("wall_s"), ".2f"),
    ("x base", 8, lambda r: r["ratio"].get("wall_s"), ".2f"),
    ("compile s", 10, lambda r: r["median"].get("compile_s"), ".2f"),
    ("train s", 9, lambda r: r["median"].get("train_s"), ".3f"),
    ("new mod", 8, lambda r: r["median"].get("new_modules"), ".0f"),
    ("max|dpred|", 11, lambda r: r["max_abs_prediction_diff_to_baseline"], ".1e"),
)


def print_table(results, skipped, opts):
    print(f"\n{opts.rounds} rounds, {opts.steps:,} steps, float32, medians; x base = median of "
          "variant/base per round")
    width = max(16, *(len(n) + 2 for n in VARIANTS))
    head = f"{'variant':<{width}}" + "".join(f"{h:>{w}}" for h, w, _, _ in COLUMNS) + "  base"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        cells = ("-" if get(r) is None else format(get(r), spec) for _, _, get, spec in COLUMNS)
        print(f"{name:<{width}}" + "".join(f"{c:>{w}}" for c, (_, w, _, _) in zip(cells, COLUMNS)) + f"  {r['base']}")
    for name, reason in skipped.items():
        print(f"{name:<{width}}{reason}")
    print(f"\n{'variant':<{width}}{'1,0':>12}{'0,0':>12}{'0,1':>12}{'1,1':>12}  what")
    for name, r in results.items():
        print(f"{name:<{width}}" + "".join(f"{p:12.8f}" for p in r["predictions"]) + f"  {r['what']}")


def print_goals(found):
    if found:
        print()
    for g in found:
        value = g["value"] if isinstance(g["value"], bool) else f"{g['value']:.3g}"
        print(f"{'met' if g['met'] else 'NOT met':<8} {g['goal']}: {value}")


def machine():
    from xor_gpu import host

    return {"cpus": os.cpu_count(), "cpu": host.cpu_name(), "load_average": os.getloadavg(),
            "python": platform.python_version(), "platform": platform.platform()}


# ---- the command line ----

def parse(argv):
    from xor_gpu.errors import ConfigError

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, not argparse's usage block
            raise ConfigError(message)

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    p.add_argument("--steps", type=int, default=60_000, help="SGD steps per run (default 60000)")
    p.add_argument("--only", help=f"comma-separated variants (default all: {','.join(VARIANTS)})")
    p.add_argument("--ref-python", default=sys.executable,
                   help="the Python that runs the jax and torch variants (default this one)")
    p.add_argument("--xor-gpu", metavar="COMMAND", type=shlex.split,
                   help="the xor-gpu the train variants run (default: this Python's); e.g. 'bash "
                        "dist/xor_gpu-bundle-run.sh', the offline bundle, also another architecture's under "
                        "emulation (its launcher sets THEANO_FLAGS and the compile cache: variants that set "
                        "theirs are refused)")
    p.add_argument("--json", metavar="PATH", help="write every run and the summary here (atomically)")
    p.add_argument("--no-warm-up", action="store_true",
                   help="measure from the first round (when the caches are warm already, or each run compiles anew)")
    opts = p.parse_args(argv)
    if opts.rounds < 1 or opts.steps < 1:
        raise ConfigError("--rounds and --steps must be at least 1")
    opts.names = [n for n in (opts.only or ",".join(VARIANTS)).split(",") if n]
    unknown = [n for n in opts.names if n not in VARIANTS]
    if unknown or not opts.names:
        raise ConfigError(f"unknown variant {', '.join(unknown) or '(none given)'}: choose from {', '.join(VARIANTS)}")
    if opts.xor_gpu:
        own = [n for n in opts.names if VARIANTS[n][1] == "train" and (VARIANTS[n][4] is not None or VARIANTS[n][5])]
        if own:
            raise ConfigError(f"--xor-gpu: {', '.join(own)} set THEANO_FLAGS or the compile cache, which the "
                              "bundle's launcher sets itself")
    opts.xor_gpu = opts.xor_gpu or [sys.executable, "-m", "xor_gpu"]
    return opts


def bench(opts):
    from xor_gpu.files import check_writable, write_json

    check_writable(opts.json)
    opts.steps_per_call = has_steps_per_call(opts.xor_gpu)
    notes = []
    if not opts.steps_per_call:
        notes.append("this xor-gpu has no --steps-per-call: every xor-gpu train variant ran its only "
                     "loop, one call per step")
        print(notes[-1])
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start_machine = machine()
    work = tempfile.mkdtemp(prefix="xor-gpu-bench-")
    names, skipped = list(opts.names), {}
    samples = {n: [] for n in names}
    try:
        for round_no in range(0 if opts.no_warm_up else -1, opts.rounds):  # -1: the warm-up round, not measured
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for name in order:
                if name in skipped:
                    continue
                try:
                    run = run_one(name, opts, work, round_no)
                except Skip as exc:  # not run again; the rounds it ran before still pair with its base's
                    skipped[name] = f"skipped: {exc}" if round_no < 0 else f"failed in round {round_no + 1}: {exc}"
                    print(f"{name}: {skipped[name]}", flush=True)
                    continue
                if round_no >= 0:
                    samples[name].append(run)
                print(f"[{'warm-up' if round_no < 0 else f'{round_no + 1}/{opts.rounds}'}] {name:<26}"
                      f"{run['wall_s']:7.2f} s wall {run['steps_per_s']:12,.0f} steps/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    measured = [n for n in names if samples[n]]
    results = summarize(samples, measured)
    found = goals(results)
    print_table(results, skipped, opts)
    print_goals(found)
    if opts.json:
        write_json(opts.json, {
            "schema": SCHEMA, "started": started, "machine": start_machine,
            "load_average_end": os.getloadavg(), "rounds": opts.rounds, "steps": opts.steps,
            "ref_python": opts.ref_python, "xor_gpu": opts.xor_gpu, "has_steps_per_call": opts.steps_per_call, "notes": notes,
            "variants": results, "skipped": skipped, "goals": found,
        })


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1], int(argv[2]))
    from xor_gpu.errors import XorGpuError

    try:
        bench(parse(argv))
    except XorGpuError as exc:
        print(f"bench.py: error: {exc}", file=sys.stderr)
        return exc.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
