"""`xor-gpu compare`: reports made anywhere, held against one reference.

Train, parity and check reports (other machines, the image, CI matrix jobs, Slurm array
tasks) are read, every training run in them is compared with the reference run (the
committed one with `--reference builtin`, a report file, or else the first run given), and
every report is also a node of the fleet: a check whose device was unusable, whose steps
failed or that was interrupted is a row of its own, not bad input.
"""
import importlib.resources
import os

from xor_gpu import files, pipeline, plots, render
from xor_gpu.errors import ConfigError
from xor_gpu.results.fleet import Comparison, Row, read, reference_run
from xor_gpu.results.runs import DEFAULT_ATOL, DEFAULT_RTOL, Tolerances, TrainRun, check_same_config
from xor_gpu.results.schemas import load

BUILTIN = "builtin"  # --reference builtin: the committed reference shipped with the package
__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "BUILTIN", "builtin_reference_path", "reference_of", "compare", "main"]


def builtin_reference_path():
    """The committed reference: the seed config on the CPU, float32, made in the pinned image."""
    return str(importlib.resources.files("xor_gpu") / "reference" / "seed-cpu-float32.json")


def reference_of(reference):
    """The TrainRun of --reference: `builtin` (labelled so) or a report file holding one run."""
    if reference == BUILTIN:
        return TrainRun(BUILTIN, reference_run(builtin_reference_path(), BUILTIN).report)
    return reference_run(reference)


def compare(paths, reference=None, tolerances=Tolerances()):
    """The Comparison of the reports at `paths`; ConfigError for anything that is not a report."""
    if not paths:
        raise ConfigError("compare needs at least one report")
    loaded = [(str(path), load(path)) for path in paths]  # every file read before any is judged
    reports = [read(path, data) for path, data in loaded]
    nodes = [node for node, _ in reports]
    runs = [run for _, held in reports for run in held]
    if reference is not None:
        ref = reference_of(reference)
    elif len(runs) == 1:
        raise ConfigError("one run and no reference: give --reference FILE (or builtin) or more reports")
    else:  # the first run given, or none when no report holds a run (every node then fails)
        ref, runs = (runs[0], runs[1:]) if runs else (None, [])
    if ref is not None:
        check_same_config(ref, runs)
    config = ref.report.comparable_config() if ref else None
    return Comparison(config, ref, tolerances, [Row.of(run, ref, tolerances) for run in runs], nodes, runs)


def plot(path, result):
    ref = result.reference
    missing = [f"{n.report}: {n.status}" for n in result.nodes if not n.runs]
    return plots.plot_runs(path, {run.label: run.report for run in result.runs},
                    f"{len(result.runs)} runs against {os.path.basename(ref.label) if ref else 'no reference'}",
                    reference=(ref.label, ref.report) if ref else None, atol=result.tolerances.atol,
                    rtol=result.tolerances.rtol, missing=missing)


def main(paths, reference=None, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, json_path=None, plot_path=None, every=None):
    tolerances = Tolerances(atol, rtol)
    files.check_writable(json_path)
    plots.check_path(plot_path)
    result = compare(paths, reference, tolerances)
    return pipeline.finish(result, render.comparison(result, every), json_path,
                           (lambda: plot(plot_path, result)) if plot_path else None, render.passed("compare"))
