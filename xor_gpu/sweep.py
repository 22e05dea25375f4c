"""`xor-gpu parity --seeds`: parity over many seeds, one matrix of seeds and devices.

Each device trains every seed in one child process (`xor-gpu train --seeds`: one
compilation serves them all), and each seed's run is compared with the reference device's
run of the same seed (xor_gpu.results.sweep.Sweep says which seeds fail and why).
"""
import sys

from xor_gpu import files, parity, pipeline, plots, render
from xor_gpu.results.sweep import Sweep


def assess(config, labels, seeds, sweeps, failures, tolerances):
    """The Sweep of `train --seeds` reports already made; labels[0] is the reference."""
    common = {k: v for k, v in config.to_dict().items() if k not in ("device", "engine", "seed")}
    return Sweep.of_reports(common, labels, seeds, tolerances, sweeps, failures)


def main(configs, seeds, tolerances, json_path=None, plot_path=None):
    """configs: {label: TrainConfig} of each run, the first the reference (as parity.main's)."""
    files.check_writable(json_path)
    plots.check_path(plot_path)
    sweeps, failures = parity.collect(configs, seeds)
    result = assess(next(iter(configs.values())), list(configs), seeds, sweeps, failures, tolerances)
    for label, converged in result.converged_counts().items():
        print(f"{label}: {converged} of {len(seeds)} seeds converged", file=sys.stderr)
    return pipeline.finish(result, None if failures else render.sweep(result), json_path,
                           (lambda: plots.plot_seeds(plot_path, result)) if plot_path and not failures
                           else None, f"{render.passed('parity')} ({', '.join(configs)}; {len(seeds)} seeds)")
