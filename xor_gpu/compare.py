"""`xor-gpu compare`: reports made anywhere, held against one reference.

Train, parity and check reports (other machines, the image, CI matrix jobs, Slurm array
tasks), or the folders of checks, are read, every training run in them is compared with the reference run (the
committed one with `--reference builtin`, a report file, or else the first run given), and
every report is also a node of the fleet: a check whose device was unusable, whose steps
failed or that was interrupted is a row of its own, not bad input; so is a check's folder
without a summary (the check was killed before it could write one), from its check.log.

The committed reference is one per architecture (docs/reference.md): `builtin` is the one of
the architecture the runs were made on (check: this machine's).
"""
import importlib.resources
import os
import platform

from xor_gpu import files, pipeline, plots, render, render_compare
from xor_gpu.errors import ConfigError
from xor_gpu.results.fleet import Comparison, Row, read, reference_run
from xor_gpu.results.runs import DEFAULT_ATOL, DEFAULT_RTOL, Tolerances, TrainRun, check_same_config
from xor_gpu.results import load

BUILTIN = "builtin"  # --reference builtin: the committed reference shipped with the package
# The committed references: the seed config on the CPU, float32, made in the pinned image
# (x86-64) and in the arm64 offline bundle (aarch64), each with the package's OpenBLAS kernels
# of its architecture. A run of a machine with none is held against the first.
REFERENCES = {"x86_64": "seed-cpu-float32.json", "aarch64": "seed-cpu-float32-aarch64.json"}
__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "BUILTIN", "REFERENCES", "builtin_reference_path", "reference_of",
           "compare", "main"]


def builtin_reference_path(machine=None):
    """The committed reference of `machine` (`uname -m`; default: this machine's)."""
    name = REFERENCES.get(machine or platform.machine(), next(iter(REFERENCES.values())))
    return str(importlib.resources.files("xor_gpu") / "reference" / name)


def reference_of(reference, machine=None):
    """The TrainRun of --reference: `builtin` (labelled so; the reference of `machine`, default
    this one's) or a report file holding one run."""
    if reference == BUILTIN:
        return TrainRun(BUILTIN, reference_run(builtin_reference_path(machine), BUILTIN).report)
    return reference_run(reference)


def machine_of(runs):
    """The architecture every one of `runs` was made on, or None (several, or not known)."""
    machines = {run.machine() for run in runs}
    return machines.pop() if len(machines) == 1 else None


def compare(paths, reference=None, tolerances=Tolerances()):
    """The Comparison of the reports at `paths`; ConfigError for anything that is not a report."""
    if not paths:
        raise ConfigError("compare needs at least one report")
    loaded = [_load(path) for path in paths]  # every file read before any is judged
    reports = [read(*report) for report in loaded]
    nodes = [node for node, _ in reports]
    runs = [run for _, held in reports for run in held]
    if reference is not None:
        ref = reference_of(reference, machine_of(runs) or next(iter(REFERENCES)))
    elif len(runs) == 1:
        raise ConfigError("one run and no reference: give --reference FILE (or builtin) or more reports")
    else:  # the first run given, or none when no report holds a run (every node then fails)
        ref, runs = (runs[0], runs[1:]) if runs else (None, [])
    if ref is not None:
        check_same_config(ref, runs)
    config = ref.report.comparable_config() if ref else None
    return Comparison(config, ref, tolerances, [Row.of(run, ref, tolerances) for run in runs], nodes, runs)


def _load(path):
    """(path, report, None) of a report file, or of a check's folder (its summary.json); a
    check's folder without one (the check was killed first) is (folder, None, its check.log)."""
    path = str(path)
    if not os.path.isdir(path):
        return path, load(path), None
    summary, log = os.path.join(path, "summary.json"), os.path.join(path, "check.log")
    if os.path.exists(summary):
        return summary, load(summary), None
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            return path, None, f.read()
    except OSError:
        raise ConfigError(f"{path}: a folder without summary.json or check.log: not the folder of a check") from None


def plot(path, result):
    ref = result.reference
    missing = [f"{n.report}: {n.status}" for n in result.nodes if not n.runs]
    return plots.plot_runs(path, {run.label: run.report for run in result.runs},
                    f"{len(result.runs)} runs against {os.path.basename(ref.label) if ref else 'no reference'}",
                    reference=(ref.label, ref.report) if ref else None, atol=result.tolerances.atol,
                    rtol=result.tolerances.rtol, missing=missing)


def main(paths, reference=None, tolerances=Tolerances(), json_path=None, plot_path=None, every=None):
    files.check_writable(json_path)
    plots.check_path(plot_path)
    result = compare(paths, reference, tolerances)
    return pipeline.finish(result, render_compare.comparison(result, every), json_path,
                           (lambda: plot(plot_path, result)) if plot_path else None, render.passed("compare"))
