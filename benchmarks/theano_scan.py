#!/usr/bin/env python3
"""Theano, K SGD steps per compiled call: chained copies of the optimized step (what
xor_gpu/model.py compiles) against one `theano.scan` over K steps, on one device.

    python benchmarks/theano_scan.py --device cpu [--k 1,10,100,1000] [--methods chain,scan]
                                     [--steps 60000] [--json PATH]

One process, one device (Theano binds it at import); every (method, K) trains the seed config
from the same initial weights. Printed per row: compile seconds, steps/s after the first call,
the device's ops per step in the compiled graph (GPU kernels and transfers; on the CPU every
C op), the final weights' sha256 and the largest prediction difference to chain K=1 (the
seed's one step per call; K=1 is that function for either method). Every call returns the
cost of each of its steps (stride 1: train's calls return only those the history samples). Run it with the package's environment (tox's envs, the image or the
bundle): it imports Theano through xor_gpu, with the package's flags and compile cache.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xor_gpu import engines  # noqa: E402
from xor_gpu.config import TrainConfig  # noqa: E402
from xor_gpu.model import XorModel  # noqa: E402
from xor_gpu.files import write_json  # noqa: E402
from xor_gpu.train import weights_digest  # noqa: E402


def hide_scan_c_loop():
    """Theano 1.0.5's C loop for scan (Cython output of 2017) does not compile on Python 3.11
    (it includes longintrepr.h): hidden, so that scan runs its Python loop, as Theano itself
    does when no C compiler is configured."""
    sys.modules.setdefault("theano.scan_module.scan_perform_ext", None)


def inner_ops(function):
    """(outer nodes, inner nodes of the scan or 0)."""
    outer = function.maker.fgraph.apply_nodes
    inner = [n for n in outer if hasattr(getattr(n.op, "fn", None), "maker")]
    return len(outer), sum(len(n.op.fn.maker.fgraph.apply_nodes) for n in inner)


def measure(model, method, k, steps):
    start = time.perf_counter()
    function = model.steps_function(k, loop=method)
    compile_s = time.perf_counter() - start
    model.start_from(TrainConfig().seed)
    calls = steps // k
    function()  # the first call also builds kernels: not timed
    start = time.perf_counter()
    for _ in range(calls - 1):
        costs = function()
    float(costs[-1])
    seconds = time.perf_counter() - start
    outer, inner = inner_ops(function)
    return {
        "method": method, "k": k, "compile_s": compile_s, "steps_per_s": (calls - 1) * k / seconds,
        "ops_per_step": (outer + inner * k) / k if inner else outer / k, "outer_nodes": outer, "inner_nodes": inner,
        "weights_sha256": weights_digest(model.final_weights()),
        "predictions": [float(p) for p in model.predict().ravel()],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--k", default="1,10,100,1000")
    parser.add_argument("--methods", default="chain,scan")
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    runtime = engines.get("theano").start(args.device, "float32")
    hide_scan_c_loop()
    model = XorModel(runtime.module, TrainConfig(device=args.device), runtime.mode)
    rows, base = [], None
    print(f"device {runtime.active_device()[1]}  steps {args.steps}", flush=True)
    for method in args.methods.split(","):
        for k in (int(v) for v in args.k.split(",")):
            row = measure(model, method, k, args.steps)
            base = base or row["predictions"]
            row["max_dpred_vs_first"] = max(abs(a - b) for a, b in zip(row["predictions"], base))
            rows.append(row)
            print(f"{method:5} K={k:<5} compile {row['compile_s']:7.2f} s  {row['steps_per_s']:>11,.0f} steps/s  "
                  f"ops/step {row['ops_per_step']:6.1f}  {row['weights_sha256'][:8]}  "
                  f"dpred {row['max_dpred_vs_first']:.2e}", flush=True)
    if args.json:
        write_json(args.json, {"device": args.device, "rows": rows})


if __name__ == "__main__":
    main()
