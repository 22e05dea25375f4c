"""`xor-gpu train`: one config trained in this process (or many seeds on one compilation),
its truth table printed, its report and plot written, then with --check its verdict; it ends
through the pipeline as parity, the sweep, check and compare do. It loads what it uses: the
training, its report and text; the figure's module (and matplotlib) only with --plot."""
import contextlib
import dataclasses
import signal
import sys
import types

from xor_gpu import files, origin, pipeline, render, train
from xor_gpu.errors import CheckFailed, Interrupted
from xor_gpu.results.train_report import SeedsReport, TrainReport


@dataclasses.dataclass
class Trained:
    """What train ends with: its report (one seed's, or every seed's) and, with --check, the
    verdict that every run converged."""
    report: object  # TrainReport or SeedsReport
    check: bool

    def to_dict(self):
        return self.report.to_dict()

    def verdict(self):
        runs = self.report.runs.values() if isinstance(self.report, SeedsReport) else [self.report]
        if self.check and not all(r.converged for r in runs):
            raise CheckFailed("not every seed converged" if len(runs) > 1 else "did not converge")


def main(config, seeds=None, json_path=None, plot_path=None, check=False):
    files.check_writable(json_path)
    if plot_path:
        from xor_gpu import plots  # --plot only: the figure's module and matplotlib

        plots.check_path(plot_path)
    signal.signal(signal.SIGTERM, _terminated)
    where = f"{config.device}, {len(seeds)} seeds" if seeds else config.device
    with _progress(config.steps * len(seeds or [None]), f"train {where}") as bar:
        if seeds:
            report = SeedsReport.of(train.run_seeds(config, seeds, progress=bar.update), origin.here())
            text, curves = render.seeds(report), {f"seed {s}": run for s, run in report.runs.items()}
            title = f"XOR loss by seed, {config.device}, {config.floatx}"
        else:
            result = train.run(config, progress=bar.update)
            report = TrainReport.of(result, origin.here())
            text, curves = render.train(report), {config.device.name: report}
            title = f"XOR loss, {config.device} ({result.device_name}), {config.floatx}"
    draw = (lambda: plots.plot_runs(plot_path, curves, title)) if plot_path else None
    return pipeline.finish(Trained(report, check), text, json_path, draw, passed=pipeline.QUIET)


def _terminated(signum, frame):
    """SIGTERM (a time limit; `check` stopping its training) ends the run as an error, exit
    143, so that what it holds is let go on the way out: above all the compile lock, which
    other trainings on the same cache wait for. A second one is ignored meanwhile."""
    signal.signal(signum, signal.SIG_IGN)
    raise Interrupted(signum)


def _progress(total, desc):
    """A bar on a terminal; silent in logs and CI, where tqdm (30 ms to import) is not imported."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext(types.SimpleNamespace(update=None))
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)
