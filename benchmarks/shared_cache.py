#!/usr/bin/env python3
"""One Theano compile cache shared by many trainings, as a Slurm array shares the home folder:
what a killed task and a whole array cost, side by side in one run.

    python3 benchmarks/shared_cache.py [--part takeover,array] [--tasks 8,32] [--rounds 3] [--json PATH]

takeover: a training in a UTS namespace of its own (hostname node-b: another node, to this
          host) is killed with SIGKILL while it holds the compile lock of an empty cache, as
          Slurm does after KillWait, or the out-of-memory killer; then one training on that
          cache, against a lone cold training on an empty cache of its own (needs root for
          `unshare -u`).
array:    N trainings started together on one empty cache (cold) and on a filled one (warm),
          against one lone training on each. The bound the package keeps: the N cold ones end
          within 1.5 times the N warm ones' wall plus one cold compile (the lone cold wall less
          the lone warm one). On a machine with fewer cores than N, N warm trainings already
          take N / cores times a lone one: the bound is against N warm ones started together.
          Each round measures all four afresh (new empty caches); the ratios are per round,
          and the medians over the rounds are printed (a shared machine is noisy).

Every training is `python -m xor_gpu train --device cpu` (the seed config) with its own
report; `--pythonpath DIR` runs the package found in DIR instead of the installed one (another
checkout: the same measure before and after a change). Prints walls, the ratios and what the
reports say (new modules compiled, seconds waited for the lock, the lock events).
"""
import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

LOCK = pathlib.Path("lock_dir", "lock")
OTHER_HOST = "node-b"


def training(cache, report, pythonpath=None, wrap=()):
    """argv and environment of one training on the compile cache `cache`."""
    env = {**os.environ, "XOR_GPU_COMPILEDIR": str(cache)}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    argv = [*wrap, sys.executable, "-m", "xor_gpu", "train", "--device", "cpu", "--json", str(report)]
    return argv, env


def start(cache, report, pythonpath=None, wrap=()):
    argv, env = training(cache, report, pythonpath, wrap)
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=pythonpath or None)


def finish(proc, report, started):
    _, stderr = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"a training exited {proc.returncode}:\n{stderr[-3000:]}")
    data = json.loads(pathlib.Path(report).read_text(encoding="utf-8"))
    cache = data.get("compile_cache") or {}
    return {"wall_s": round(wall, 2), "compile_s": round(data["compile_seconds"], 2),
            "new_modules": data["new_compiled_modules"], "lock_wait_s": cache.get("lock_wait_seconds"),
            "events": cache.get("events", []), "stderr": [line for line in stderr.splitlines() if line.strip()],
            "weights_sha256": data["weights_sha256"]}


def together(cache, out, n, pythonpath, name):
    """n trainings started at once on `cache`: their results, and the wall until the last ended."""
    started = time.perf_counter()
    procs = [(start(cache, out / f"{name}-{i}.json", pythonpath), out / f"{name}-{i}.json") for i in range(n)]
    runs = [finish(proc, report, started) for proc, report in procs]
    return {"wall_s": round(time.perf_counter() - started, 2), "runs": runs}


def lone(cache, out, pythonpath, name):
    return together(cache, out, 1, pythonpath, name)["runs"][0]


def takeover(out, pythonpath):
    cold = lone(out / "alone", out, pythonpath, "alone")
    cache = out / "shared"
    wrap = ["unshare", "-u", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh"]
    holder = start(cache, out / "holder.json", pythonpath, wrap)
    deadline = time.monotonic() + 300
    while not _held_by(cache, OTHER_HOST):
        if holder.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the training on {OTHER_HOST} never held the compile lock (exit {holder.poll()})")
        time.sleep(0.01)
    os.killpg(holder.pid, signal.SIGKILL)  # the training and its compiler
    holder.wait()
    owner = (cache / LOCK).read_text(encoding="utf-8").splitlines()[0] if (cache / LOCK).exists() else None
    after = lone(cache, out, pythonpath, "after-kill")
    return {"lone_cold": cold, "killed_lock": owner, "after_kill": after,
            "ratio": round(after["wall_s"] / cold["wall_s"], 2)}


def _held_by(cache, host):
    try:
        return (cache / LOCK).read_text(encoding="utf-8").split("\n")[0].endswith(f"_{host}")
    except OSError:
        return False


def array(out, n, pythonpath, rounds):
    """`rounds` rounds of: a lone warm and a lone cold training, n warm and n cold together
    (each cold one on an empty cache of its own); the ratios per round, and their medians."""
    warm_cache = out / f"warm-{n}"
    lone(warm_cache, out, pythonpath, f"fill-{n}")  # fills the warm cache, not counted
    measured = []
    for r in range(rounds):
        name = f"{n}-{r}"
        lone_warm = lone(warm_cache, out, pythonpath, f"lone-warm-{name}")
        lone_cold = lone(out / f"lone-cold-{name}", out, pythonpath, f"lone-cold-{name}")
        warm = together(warm_cache, out, n, pythonpath, f"warm-{name}")
        cold = together(out / f"cold-{name}", out, n, pythonpath, f"cold-{name}")
        cold_compile = lone_cold["wall_s"] - lone_warm["wall_s"]
        bound = 1.5 * warm["wall_s"] + cold_compile
        measured.append({
            "lone_warm": lone_warm, "lone_cold": lone_cold, "warm": warm, "cold": cold,
            "cold_compile_s": round(cold_compile, 2), "bound_s": round(bound, 2),
            "cold_over_bound": round(cold["wall_s"] / bound, 2), "cold_over_warm": round(cold["wall_s"] / warm["wall_s"], 2),
            "new_modules_cold": sum(x["new_modules"] for x in cold["runs"]), "new_modules_lone_cold": lone_cold["new_modules"],
            "bitwise_equal": len({x["weights_sha256"] for x in cold["runs"] + warm["runs"]}) == 1})
        show_round(n, r, measured[-1])

    def median(key, part=None):
        return round(statistics.median(m[key] if part is None else m[key][part] for m in measured), 2)

    return {"tasks": n, "rounds": measured, "median": {
        "lone_warm_s": median("lone_warm", "wall_s"), "lone_cold_s": median("lone_cold", "wall_s"),
        "warm_s": median("warm", "wall_s"), "cold_s": median("cold", "wall_s"), "bound_s": median("bound_s"),
        "cold_over_bound": median("cold_over_bound"), "cold_over_warm": median("cold_over_warm")},
        "new_modules_cold": [m["new_modules_cold"] for m in measured],
        "new_modules_lone_cold": [m["new_modules_lone_cold"] for m in measured],
        "bitwise_equal": all(m["bitwise_equal"] for m in measured)}


def show_takeover(r):
    a = r["after_kill"]
    print(f"takeover: lone cold training {r['lone_cold']['wall_s']:.1f} s; after a training on {OTHER_HOST} "
          f"was killed holding the lock ({r['killed_lock']}): {a['wall_s']:.1f} s ({r['ratio']:.2f}x), "
          f"waited {a['lock_wait_s']} s for the lock")
    for line in a["stderr"]:
        print(f"  stderr: {line}")


def show_round(n, i, r):
    waits = [w["lock_wait_s"] for w in r["cold"]["runs"] if w["lock_wait_s"] is not None]
    print(f"[{n} tasks, round {i + 1}] lone warm {r['lone_warm']['wall_s']:.1f} s, lone cold {r['lone_cold']['wall_s']:.1f} s "
          f"({r['new_modules_lone_cold']} modules); {n} warm together {r['warm']['wall_s']:.1f} s, {n} cold together "
          f"{r['cold']['wall_s']:.1f} s ({r['new_modules_cold']} modules in all, lock waits up to "
          f"{max(waits, default=0):.1f} s); cold / bound {r['cold_over_bound']:.2f}", flush=True)


def show_array(r):
    m, n = r["median"], r["tasks"]
    print(f"array of {n} (medians of {len(r['rounds'])} rounds): lone warm {m['lone_warm_s']:.1f} s, lone cold "
          f"{m['lone_cold_s']:.1f} s; {n} warm together {m['warm_s']:.1f} s, {n} cold together {m['cold_s']:.1f} s")
    print(f"  cold / warm together {m['cold_over_warm']:.2f}x; cold / (1.5 x warm together + one cold compile) "
          f"{m['cold_over_bound']:.2f}; modules compiled by the {n} cold ones: {r['new_modules_cold']}, by a lone "
          f"cold one: {r['new_modules_lone_cold']}; bitwise equal: {r['bitwise_equal']}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", default="takeover,array", help="takeover, array or both (default)")
    p.add_argument("--tasks", default="8,32", help="the array sizes, comma separated (default 8,32)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the array part (default 3): medians")
    p.add_argument("--pythonpath", help="run the xor_gpu package of this folder (another checkout)")
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    args = p.parse_args()
    parts = [x for x in args.part.split(",") if x]
    if set(parts) - {"takeover", "array"}:
        p.error(f"--part: unknown {', '.join(sorted(set(parts) - {'takeover', 'array'}))}")
    try:
        sizes = [int(x) for x in args.tasks.split(",") if x]
    except ValueError:
        p.error(f"--tasks: not numbers: {args.tasks}")
    if args.rounds < 1:
        p.error("--rounds: at least 1")
    pythonpath = os.path.abspath(args.pythonpath) if args.pythonpath else None
    results = {"cpus": os.cpu_count(), "pythonpath": pythonpath}
    with tempfile.TemporaryDirectory(prefix="xor-gpu-shared-cache-") as tmp:
        out = pathlib.Path(tmp)
        if "takeover" in parts:
            results["takeover"] = takeover(out, pythonpath)
            show_takeover(results["takeover"])
        if "array" in parts:
            results["array"] = []
            for n in sizes:
                results["array"].append(array(out, n, pythonpath, args.rounds))
                show_array(results["array"][-1])
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
