"""What a run leaves behind: the JSON report (schema in README.md), the text table, the plot.

Files are written atomically (a temporary file in the same folder, then os.replace), so a
reader never sees half a report, and paths are checked before training starts.
"""
import json
import os
import tempfile

from xor_gpu.config import CONVERGENCE_MARGIN, INPUTS, TARGETS
from xor_gpu.errors import ConfigError

TRAIN_SCHEMA = "xor_gpu.train/1"
PARITY_SCHEMA = "xor_gpu.parity/1"


def row_key(row):
    return f"{row[0]},{row[1]}"


def train_report(result):
    c = result.config
    return {
        "schema": TRAIN_SCHEMA,
        "config": c.to_dict(),
        "device": {"requested": c.device, "active": result.device_active, "name": result.device_name},
        "floatX": c.floatx,
        "versions": result.versions,
        "predictions": {row_key(r): p for r, p in zip(INPUTS, result.predictions)},
        "targets": {row_key(r): t for r, t in zip(INPUTS, TARGETS)},
        "final_loss": result.final_loss,
        "loss_history": {"every": result.history_every, "values": result.loss_history},
        "compile_seconds": result.compile_seconds,
        "first_step_seconds": result.first_step_seconds,
        "train_seconds": result.train_seconds,
        "steps_per_second": result.steps_per_second,
        "new_compiled_modules": result.new_compiled_modules,
        "ops": result.ops,
        "convergence_margin": CONVERGENCE_MARGIN,
        "converged": result.converged,
    }


def check_writable(path):
    """Fail before training, not after, when an output file cannot be written."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: folder {folder} is not writable")


def check_plot_path(path):
    """As check_writable, and matplotlib must be there: both before training."""
    check_writable(path)
    if path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError("--plot needs matplotlib: pip install 'xor_gpu[plot]'") from None


def _atomic(path, write, mode="w"):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, data):
    _atomic(path, lambda f: (json.dump(data, f, indent=2, allow_nan=False), f.write("\n")))


def format_train(report):
    """The human-readable summary of one training run."""
    lines = ["input    target  prediction  ok"]
    margin = report["convergence_margin"]
    for key, pred in report["predictions"].items():
        target = report["targets"][key]
        ok = "yes" if abs(pred - target) <= 0.5 - margin else "NO"
        lines.append(f"{key:<8} {target:>6}  {pred:10.6f}  {ok}")
    dev = report["device"]
    lines += [
        f"final loss      {report['final_loss']:.6g}",
        f"device          requested {dev['requested']}, active {dev['active']} ({dev['name']})",
        f"floatX          {report['floatX']}",
        f"compile         {report['compile_seconds']:.2f} s ({report['new_compiled_modules']} new modules)",
        f"first step      {report['first_step_seconds']:.2f} s (includes the device's kernel builds)",
        f"train           {report['train_seconds']:.2f} s, {report['steps_per_second']:,.0f} steps/s "
        f"({report['config']['steps']:,} steps)",
        f"converged       {'yes' if report['converged'] else 'NO'} "
        f"(every prediction within {0.5 - margin:g} of its target)",
    ]
    return "\n".join(lines)


def plot_losses(path, curves, title):
    """Loss curves of one or more runs; with several, a second panel shows |difference| to the first.

    curves: {label: (every, values)}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(curves)
    panels = 2 if len(labels) > 1 else 1
    fig, axes = plt.subplots(panels, 1, figsize=(8, 3.2 * panels + 0.6), sharex=True, squeeze=False)
    ax = axes[0][0]
    for i, label in enumerate(labels):
        every, values = curves[label]
        steps = np.arange(len(values)) * every
        ax.plot(steps, values, label=label, linewidth=2.5 if i == 0 else 1.2, linestyle="-" if i == 0 else "--")
    ax.set_yscale("log")
    ax.set_ylabel("loss (sum of squared errors)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if panels == 2:
        ax = axes[1][0]
        every0, ref = curves[labels[0]]
        ref = np.asarray(ref)
        for label in labels[1:]:
            every, values = curves[label]
            n = min(len(ref), len(values))
            diff = np.abs(np.asarray(values[:n]) - ref[:n])
            # Identical runs differ by exactly 0; show those points at the floor of the axis.
            ax.plot(np.arange(n) * every, np.maximum(diff, 1e-12), label=f"|{label} - {labels[0]}|")
        ax.set_yscale("log")
        ax.set_ylabel("absolute loss difference\n(0 drawn at 1e-12)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[-1][0].set_xlabel("step")
    fig.tight_layout()
    _atomic(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)
