"""Parity: the same config trained on several devices, each in its own process, compared.

Theano binds its device at import, so each device runs as a child `xor-gpu train`
(xor_gpu.pipeline.collect); the result (xor_gpu.results.parity.Parity) holds every run against
the first device's.
"""
from xor_gpu import engines, files, pipeline, plots, render
from xor_gpu.config import check_device
from xor_gpu.errors import ConfigError
from xor_gpu.results.parity import Parity
from xor_gpu.results.runs import Tolerances


def check_args(devices, atol, rtol):
    if len(devices) < 2:
        raise ConfigError("parity needs at least two devices, e.g. --devices cpu,opencl0:0")
    for d in devices:
        check_device(d)
    if len(set(devices)) != len(devices):
        raise ConfigError(f"each device once, got {','.join(devices)}")
    Tolerances(atol, rtol)


def runs_of(devices=None, runs=None):
    """{label: (engine, device)} of `--devices` (Theano runs, named by device) or `--runs`."""
    if runs is None:
        return {d: (engines.DEFAULT, d) for d in devices}
    return {engines.label(e, d): (e, d) for e, d in runs}


def assess(config, devices, reports, failures, tolerances):
    """The Parity of runs already made; devices[0] is the reference."""
    common = {k: v for k, v in config.to_dict().items() if k not in ("device", "engine")}
    return Parity(common, devices, tolerances, reports, failures)


def plot(path, result):
    config = result.config
    plots.plot_runs(path, result.runs, f"XOR loss by device, {config['floatx']}, {config['steps']:,} steps",
                    reference=result.reference, atol=result.tolerances.atol, rtol=result.tolerances.rtol)


def main(config, runs, atol, rtol, json_path=None, plot_path=None):
    """runs: {label: (engine, device)}, the first the reference (runs_of())."""
    tolerances = Tolerances(atol, rtol)
    files.check_writable(json_path)
    plots.check_path(plot_path)
    reports, failures = pipeline.collect(config, runs)
    result = assess(config, list(runs), reports, failures, tolerances)
    return pipeline.finish(result, None if failures else render.parity(result), json_path,
                           (lambda: plot(plot_path, result)) if plot_path and reports else None,
                           f"{render.passed('parity')} ({', '.join(runs)})")
