#!/usr/bin/env python3
"""Cold vs warm `docker compose run --rm train`, side by side, in one run.

    python3 benchmarks/docker_warm.py [--steps 2000] [--devices cpu,opencl0:0] [--repeat 3]

cold: the container gets empty, private caches (XOR_GPU_COMPILEDIR and POCL_CACHE_DIR point
      into its own /tmp), so Theano compiles every module and PoCL builds every kernel:
      what a run costs without the caches baked into the image.
warm: the compose service as shipped: the named volume over ~/.cache holds the caches
      baked at build time (copied in at the volume's first mount).
Each repetition runs cold then warm in fresh containers; medians are printed, with the
report's compile time and newly compiled module count. Needs the image (scripts/docker-build)
and a Docker daemon; uses a compose project of its own, removed at the end.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
COLD_ENV = ("-e", "XOR_GPU_COMPILEDIR=/tmp/cold/theano", "-e", "POCL_CACHE_DIR=/tmp/cold/pocl")


def compose(project, out, *args, check=True):
    cmd = ["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
           "-p", project, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "XOR_GPU_OUT": out})
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def one_run(project, out, device, steps, cold):
    report = pathlib.Path(out, "report.json")
    report.unlink(missing_ok=True)
    args = ["run", "--rm", "-T", *(COLD_ENV if cold else ()), "train", "--steps", str(steps), "--device", device]
    start = time.perf_counter()
    compose(project, out, *args)
    wall = time.perf_counter() - start
    data = json.loads(report.read_text(encoding="utf-8"))
    return {"wall_s": wall, "compile_s": data["compile_seconds"], "train_s": data["train_seconds"],
            "new_modules": data["new_compiled_modules"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--devices", default="cpu,opencl0:0")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", metavar="PATH", help="also write the raw timings here")
    args = p.parse_args()
    devices = [d for d in args.devices.split(",") if d]
    project = f"xor-gpu-bench-{os.getpid()}"
    out = tempfile.mkdtemp(prefix="xor-gpu-bench-")
    if os.geteuid() == 0:
        os.chown(out, 1000, 1000)  # the image's user writes the report
    else:
        os.chmod(out, 0o777)
    results = {d: {"cold": [], "warm": []} for d in devices}
    try:
        # the first mount fills the new volume from the image; not part of the timings
        compose(project, out, "run", "--rm", "-T", "--entrypoint", "true", "train")
        for i in range(args.repeat):
            for d in devices:
                for kind in ("cold", "warm"):
                    r = one_run(project, out, d, args.steps, kind == "cold")
                    results[d][kind].append(r)
                    print(f"[{i + 1}/{args.repeat}] {d:<10} {kind}: {r['wall_s']:6.1f} s wall, "
                          f"compile {r['compile_s']:5.1f} s, {r['new_modules']} new modules", flush=True)
    finally:
        compose(project, out, "down", "--volumes", check=False)

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    print(f"\ndocker compose run --rm train --steps {args.steps}, medians of {args.repeat}")
    print(f"{'device':<11} {'cold wall':>9} {'warm wall':>9} {'cold/warm':>9}  "
          f"{'cold compile':>12} {'warm compile':>12}  {'new modules cold/warm':>21}")
    for d in devices:
        c, w = results[d]["cold"], results[d]["warm"]
        print(f"{d:<11} {med(c, 'wall_s'):8.1f}s {med(w, 'wall_s'):8.1f}s {med(c, 'wall_s') / med(w, 'wall_s'):8.1f}x  "
              f"{med(c, 'compile_s'):11.1f}s {med(w, 'compile_s'):11.1f}s  "
              f"{med(c, 'new_modules'):>10.0f} / {med(w, 'new_modules'):<8.0f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"steps": args.steps, "repeat": args.repeat, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
