"""What a run leaves behind: the JSON report (schema in README.md), the text table, the plot.

Files are written atomically (a temporary file in the same folder, then os.replace), so a
reader never sees half a report, and paths are checked before training starts.
"""
import json
import os
import platform
import socket
import tempfile

from xor_gpu.config import CONVERGENCE_MARGIN, INPUTS, TARGETS, row_converged
from xor_gpu.errors import ConfigError

TRAIN_SCHEMA = "xor_gpu.train/1"
PARITY_SCHEMA = "xor_gpu.parity/1"
SEEDS_SCHEMA = "xor_gpu.train-seeds/1"  # train --seeds: one train report per seed
SWEEP_SCHEMA = "xor_gpu.parity-seeds/1"  # parity --seeds: the matrix of seeds and devices
# The image writes its manifest here; the offline bundle points XOR_GPU_MANIFEST at its own.
MANIFEST_DEFAULT = "/etc/xor_gpu/manifest.json"


def row_key(row):
    return f"{row[0]},{row[1]}"


def read_manifest():
    """The image's or the bundle's manifest as a dict (with its path), or None outside them."""
    path = os.environ.get("XOR_GPU_MANIFEST", MANIFEST_DEFAULT)
    try:
        with open(path, encoding="utf-8") as f:
            return {"path": path, **json.load(f)}
    except (OSError, ValueError):
        return None


def origin():
    """Where a report was made, so that reports from many machines can be told apart."""
    where = {"host": socket.gethostname(), "os": platform.platform()}
    m = read_manifest()
    if m:  # the image's manifest names the image, the bundle's is schema xor_gpu.bundle/1
        where["package"] = {
            "kind": "image" if "image" in m else "bundle",
            "name": m.get("image", "xor_gpu-bundle"),
            "git_commit": m.get("vcs_ref") or m.get("git_commit") or "",
            "built": m.get("build_date") or m.get("built") or "",
        }
    return where


def train_report(result):
    c = result.config
    return {
        "schema": TRAIN_SCHEMA,
        "config": c.to_dict(),
        "device": {"requested": c.device, "active": result.device_active, "name": result.device_name},
        "floatX": c.floatx,
        "versions": result.versions,
        "blas": result.blas,
        "origin": origin(),
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
        "weights_sha256": result.weights_sha256,
        "final_weights": result.final_weights,
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


def can_plot():
    try:
        import matplotlib  # noqa: F401  (a broken install fails here, not after training)
    except ImportError:
        return False
    return True


def check_plot_path(path):
    """As check_writable, and matplotlib must be there: both before training."""
    check_writable(path)
    if path is not None and not can_plot():
        raise ConfigError("--plot needs matplotlib: pip install 'xor_gpu[plot]'")


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


def _modules(count):
    return "" if count is None else f" ({count} new modules)"


def format_train(report):
    """The human-readable summary of one training run."""
    lines = ["input    target  prediction  ok"]
    margin = report["convergence_margin"]
    for key, pred in report["predictions"].items():
        target = report["targets"][key]
        ok = "yes" if row_converged(pred, target) else "NO"
        lines.append(f"{key:<8} {target:>6}  {pred:10.6f}  {ok}")
    dev = report["device"]
    lines += [
        f"final loss      {report['final_loss']:.6g}",
        f"engine          {report['config'].get('engine', 'theano')}",
        f"device          requested {dev['requested']}, active {dev['active']} ({dev['name']})",
        f"floatX          {report['floatX']}",
        f"compile         {report['compile_seconds']:.2f} s{_modules(report['new_compiled_modules'])}",
        f"first step      {report['first_step_seconds']:.2f} s (includes the device's kernel builds)",
        f"train           {report['train_seconds']:.2f} s, {report['steps_per_second']:,.0f} steps/s "
        f"({report['config']['steps']:,} steps)",
        f"converged       {'yes' if report['converged'] else 'NO'} "
        f"(every prediction within {0.5 - margin:g} of its target)",
        f"weights sha256  {report['weights_sha256'][:16]}",
    ]
    return "\n".join(lines)


def seeds_report(results):
    """`train --seeds`: the train report of every seed, keyed by the seed as text (JSON keys)."""
    return {"schema": SEEDS_SCHEMA, "device": results[0].config.device,
            "seeds": [r.config.seed for r in results],
            "runs": {str(r.config.seed): train_report(r) for r in results}}


def format_seeds(data):
    """One line per seed, then how many converged."""
    lines = ["seed        final loss  converged  weights sha256"]
    runs = data["runs"].values()
    for run in runs:
        lines.append(f"{run['config']['seed']:<10} {run['final_loss']:11.6g}  {'yes' if run['converged'] else 'NO':>9}"
                     f"  {run['weights_sha256'][:16]}")
    first = next(iter(runs))
    lines.append(f"{sum(r['converged'] for r in runs)} of {len(data['runs'])} seeds converged on {data['device']} "
                 f"({first['device']['name']}), {first['config']['steps']:,} steps each")
    return "\n".join(lines)
