#!/usr/bin/env python3
"""What the offline bundle's launcher costs a run, side by side, in one run.

    python3 benchmarks/bundle_warm.py --bundle dist/xor_gpu-bundle.tar.gz \\
        [--base OLD/xor_gpu-bundle.tar.gz] [--rounds 5] [--steps 2000] [--cold 0]

Each variant runs `train --device cpu --steps N` (a warm run: a real user's wait) and
`check --help` (Python starts and exits: the launcher's own share shows), each in a process of
its own, round-robin with the first of each round rotating; a warm-up round fills the caches.
- direct: the bundle's Python exec'd as the launcher execs it (`python -I -B -m xor_gpu.launch
  bundle ROOT STATE -- ARGS`), no launcher at all;
- launcher: `bash xor_gpu-bundle-run.sh --bundle ARCHIVE --cache DIR ARGS`: the archive's
  checksum, the cache folders' owners and modes, the manifest against the archive's and the
  interpreter against the manifest, then the same exec;
- base (with --base): another archive with the launcher beside it (an older build), the same way.
The launcher's cost is launcher - direct in the same round (median over rounds). Each round
also traces one `check --help` of each launcher (bash -x, a timestamp per command) for its
parts: the archive's checksum (`sha256sum`), and its checks from `trust` to `exec` (the cache
folders' owners and modes, the manifest, the interpreter). --cold N adds N runs of each
launcher on an empty cache (unpacking, checking every file, compiling). Medians are printed;
--json keeps every run.
"""
import argparse
import itertools
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

CHECK_HELP = ["check", "--help"]


def runner_of(archive):
    runner = archive.with_name("xor_gpu-bundle-run.sh")
    if not runner.exists():
        sys.exit(f"no xor_gpu-bundle-run.sh beside {archive}")
    return runner


def launch(archive, cache, args):
    return ["bash", str(runner_of(archive)), "--bundle", str(archive), "--cache", str(cache), *args]


def direct(state, args):
    root = state / "xor_gpu-bundle" / "root"
    return [str(root / "usr/bin/python3.11"), "-I", "-B", "-m", "xor_gpu.launch", "bundle", str(root), str(state),
            "--", *args]


def timed(cmd, env):
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds


# root's bash takes no PS4 from the environment: it is set here, and the launcher sourced.
TRACE = "PS4='+${EPOCHREALTIME} '; set -x; . \"$0\" \"$@\""


def traced(cmd, env):
    """{"launcher_ms", "checksum_ms", "checks_ms"} of a launcher run `cmd` (bash RUNNER ARGS)."""
    proc = subprocess.run(["bash", "-c", TRACE, *cmd[1:]], env=env, capture_output=True, text=True)
    lines = [line.lstrip("+").split(" ", 1) for line in proc.stderr.splitlines() if line.startswith("+")]
    times = [(float(t), text) for t, text in (x for x in lines if len(x) == 2 and x[0].replace(".", "").isdigit())]
    first = {}
    for i, (t, text) in enumerate(times):
        for word in ("sha256sum", "trust ", "exec "):
            if text.startswith(word) and word not in first:
                first[word] = i
    end = times[first["exec "]][0]
    hashed = first["sha256sum"]  # until its output is assigned (older launchers pipe it through cut)
    done = next(t for t, text in times[hashed:] if text.startswith(("digest=", "state=")))
    parts = {"launcher_ms": end - times[0][0], "checksum_ms": done - times[hashed][0]}
    if "trust " in first:
        parts["checks_ms"] = end - times[first["trust "]][0]
    return {k: v * 1000 for k, v in parts.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=pathlib.Path, required=True, help="the archive (its run.sh beside it)")
    p.add_argument("--base", type=pathlib.Path, help="another archive to compare with (its run.sh beside it)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--cold", type=int, default=0, metavar="N", help="also N cold runs of each launcher")
    p.add_argument("--json", type=pathlib.Path, metavar="PATH")
    args = p.parse_args()
    base = pathlib.Path(tempfile.mkdtemp(prefix="xor_gpu-bundle-bench."))  # mode 0700: a cache of one's own
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base)}
    archives = {"launcher": args.bundle.resolve(), **({"base": args.base.resolve()} if args.base else {})}
    train = ["train", "--device", "cpu", "--steps", str(args.steps)]
    variants = {}  # name: (train command, check --help command)
    for name, archive in archives.items():
        cache = base / name
        timed(launch(archive, cache, CHECK_HELP), env)  # unpacks it
        variants[name] = (launch(archive, cache, train), launch(archive, cache, CHECK_HELP))
        if name == "launcher":
            (state,) = cache.iterdir()
            variants["direct"] = (direct(state, train), direct(state, CHECK_HELP))
    names = ["direct", *archives]
    runs = {name: {"train": [], "check --help": []} for name in names}
    traces = {name: [] for name in archives}
    for r in range(args.rounds + 1):  # round 0 warms the caches and is not counted
        order = names[r % len(names):] + names[:r % len(names)]
        for name, (what, i) in itertools.product(order, (("train", 0), ("check --help", 1))):
            seconds = timed(variants[name][i], env)
            if r:
                runs[name][what].append(seconds)
        for name in (n for n in order if n in archives and r):
            traces[name].append(traced(variants[name][1], env))
    cold = {name: [] for name in archives}
    for n in range(args.cold):
        for name, archive in archives.items():
            cold[name].append(timed(launch(archive, base / f"cold-{name}-{n}", train), env))
    print(f"warm, {args.rounds} rounds, medians (the machine's load average: {os.getloadavg()[0]:.1f})")
    print(f"{'variant':<10} {'train s':>9} {'check --help s':>15} {'launcher ms':>12} {'train / direct':>15}")
    summary = {}
    for name in names:
        train_s, help_s = (statistics.median(runs[name][w]) for w in ("train", "check --help"))
        cost = statistics.median(a - b for a, b in zip(runs[name]["check --help"], runs["direct"]["check --help"]))
        ratio = statistics.median(a / b for a, b in zip(runs[name]["train"], runs["direct"]["train"]))
        summary[name] = {"train_s": train_s, "check_help_s": help_s, "launcher_ms": cost * 1000,
                         "train_ratio_to_direct": ratio}
        print(f"{name:<10} {train_s:9.3f} {help_s:15.3f} {cost * 1000:12.0f} {ratio:15.3f}")
    print("the launchers' parts, traced (bash -x adds its own cost), medians in ms:")
    for name, parts in traces.items():
        medians = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
        summary[name]["traced_ms"] = medians
        print(f"{name:<10} " + ", ".join(f"{k.removesuffix('_ms')} {v:.1f}" for k, v in medians.items()))
    for name, times in cold.items():
        if times:
            summary[name]["cold_train_s"] = statistics.median(times)
            print(f"cold {name}: median {statistics.median(times):.1f} s over {len(times)} runs")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs, "traces": traces, "cold": cold},
                                        indent=2) + "\n")
    subprocess.run(["rm", "-rf", str(base)], check=True)


if __name__ == "__main__":
    main()
