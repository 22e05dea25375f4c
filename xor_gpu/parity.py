"""Parity: the same config trained on several devices (or engines), each in its own process,
compared.

Theano binds its device at import, so each run is a child `xor-gpu train` (collect(), through
xor_gpu.child, in its engine's Python); the result (xor_gpu.results.parity.Parity) holds every
run against the first.
"""
import sys

from xor_gpu import child, devices, engine_python, engines, files, pipeline, plots, render
from xor_gpu.errors import ConfigError
from xor_gpu.results.parity import Failure, Parity


def runs_of(text):
    """{label: (engine, Device)} of `--devices` (Theano on each, named by the device), each
    device once, at least two: the runs `--runs` gives as engines.parse_runs() reads them."""
    names = [d.strip() for d in text.split(",") if d.strip()]
    if len(names) < 2:
        raise ConfigError("parity needs at least two devices, e.g. --devices cpu,opencl0:0")
    runs = {device.name: (engines.DEFAULT, device) for device in map(devices.device, names)}
    if len(runs) != len(names):
        raise ConfigError(f"each device once, got {','.join(names)}")
    return runs


def collect(configs, seeds=None):
    """Train each run's config ({label: TrainConfig}) once, each in its own child process with
    its engine's Python. Returns ({label: report}, {label: Failure}); a failed run does not stop
    the others."""
    for config in configs.values():  # a missing engine environment: exit 3 before any training
        engine_python.python_for(config.engine)
    reports, failures = {}, {}
    for label, config in configs.items():
        what = f"{len(seeds)} seeds on {label}" if seeds else label
        print(f"training {what} ...", file=sys.stderr, flush=True)
        run = child.train(config, seeds=seeds)
        if run.ok:
            reports[label] = run.report
            print(f"{label}: done in {run.seconds:.1f} s", file=sys.stderr, flush=True)
        else:
            failures[label] = Failure(exit_status=run.exit_status, error=run.error)
    return reports, failures


def assess(config, labels, reports, failures, tolerances):
    """The Parity of runs already made; labels[0] is the reference."""
    common = {k: v for k, v in config.to_dict().items() if k not in ("device", "engine")}
    return Parity(common, labels, tolerances, reports, failures)


def plot(path, result):
    config = result.config
    plots.plot_runs(path, result.runs, f"XOR loss by device, {config['floatx']}, {config['steps']:,} steps",
                    reference=result.reference, atol=result.tolerances.atol, rtol=result.tolerances.rtol)


def main(configs, tolerances, json_path=None, plot_path=None):
    """configs: {label: TrainConfig} of each run, the first the reference."""
    files.check_writable(json_path)
    plots.check_path(plot_path)
    reports, failures = collect(configs)
    result = assess(next(iter(configs.values())), list(configs), reports, failures, tolerances)
    return pipeline.finish(result, None if failures else render.parity(result), json_path,
                           (lambda: plot(plot_path, result)) if plot_path and reports else None,
                           f"{render.passed('parity')} ({', '.join(configs)})")
