"""`xor-gpu compare`: reports made anywhere, held against one reference.

Train, parity and check reports (other machines, the image, CI matrix jobs, Slurm array
tasks) are read, every training run in them is compared with the reference run (the
committed one with `--reference builtin`, a report file, or else the first run given)
and one table says where each run came from, how far it is from the reference, and
whether it is bitwise equal to it. The same differences serve `parity` and `check`.
"""
import importlib.resources
import json
import math
import os

import numpy as np

from xor_gpu import report
from xor_gpu.config import INPUTS
from xor_gpu.errors import CheckFailed, ConfigError

# float32 on two devices differs by summation order and by each device's exp(); the seed
# config measured 2.2e-8 (predictions) and 1.3e-6 (relative loss) between CPU and PoCL,
# 5.7e-6 and 8.5e-5 between Theano float32 and the float64 oracle. The defaults leave room
# for other hardware while a real bug (gradient, draw order, lr) moves predictions by >1e-2.
DEFAULT_ATOL = 1e-4  # max |prediction difference| against the reference
DEFAULT_RTOL = 1e-3  # max |loss difference| / |reference loss| over the sampled history

COMPARE_SCHEMA = "xor_gpu.compare/1"
CHECK_SCHEMA = "xor_gpu.check/1"
BUILTIN = "builtin"  # --reference builtin: the committed reference shipped with the package
CONFIG_FIELDS = ("floatx", "hidden", "lr", "steps", "seed")
ROWS = [report.row_key(r) for r in INPUTS]


def builtin_reference_path():
    """The committed reference: the seed config on the CPU, float32, made in the pinned image."""
    return str(importlib.resources.files("xor_gpu") / "reference" / "seed-cpu-float32.json")


def relative_loss_differences(reference, other):
    """|other - reference| / |reference| per loss sample (numpy arrays), and the mask of
    samples exactly equal; the common length of both histories."""
    n = min(len(reference), len(other))
    ref, val = np.asarray(reference[:n], dtype=float), np.asarray(other[:n], dtype=float)
    diff = np.abs(val - ref)
    return diff / np.maximum(np.abs(ref), 1e-30), diff == 0


def max_prediction_difference(reference, other):
    return max(abs(other["predictions"][k] - reference["predictions"][k]) for k in ROWS)


def differences(reference, other):
    """Max |prediction difference|, max relative loss-history difference, bitwise equality."""
    rel, _ = relative_loss_differences(reference["loss_history"]["values"], other["loss_history"]["values"])
    return {"max_abs_prediction_diff": max_prediction_difference(reference, other),
            "max_rel_loss_diff": float(rel.max()),
            "bitwise_equal": other["weights_sha256"] == reference["weights_sha256"]}


def within(diff, atol, rtol):
    return diff["max_abs_prediction_diff"] <= atol and diff["max_rel_loss_diff"] <= rtol


def check_tolerances(atol, rtol):
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def load(path):
    """A report file as a dict; ConfigError (one line) for anything that is not one of ours."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror if isinstance(exc, OSError) else 'not text'}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        truncated = getattr(exc, "pos", 0) >= len(text.rstrip()) and text.strip()
        raise ConfigError(f"{path}: {'truncated JSON' if truncated else 'not JSON'} ({exc})") from None
    if not isinstance(data, dict) or "schema" not in data:
        raise ConfigError(f"{path}: not an xor_gpu report (no schema)")
    return data


def runs_of(path, data=None):
    """[(label, train report)] of every training run a report file holds."""
    data = load(path) if data is None else data
    schema = data["schema"]
    if schema == report.TRAIN_SCHEMA:
        runs = [(path, data)]
    elif schema in (report.PARITY_SCHEMA, CHECK_SCHEMA):
        runs = [(f"{path}[{name}]", run) for name, run in (data.get("runs") or {}).items()]
        if not runs:
            raise ConfigError(f"{path}: a {schema} report with no training runs")
    else:
        raise ConfigError(f"{path}: unknown schema {schema!r} (expected {report.TRAIN_SCHEMA}, "
                          f"{report.PARITY_SCHEMA} or {CHECK_SCHEMA})")
    for label, run in runs:
        _validate_run(label, run)
    return runs


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate_run(label, run):
    if not isinstance(run, dict) or run.get("schema") != report.TRAIN_SCHEMA:
        raise ConfigError(f"{label}: not a {report.TRAIN_SCHEMA} run")
    predictions = run.get("predictions")
    if not isinstance(predictions, dict) or any(k not in predictions for k in ROWS):
        raise ConfigError(f"{label}: predictions missing (need rows {', '.join(ROWS)})")
    bad = [k for k in ROWS if not _finite(predictions[k])]
    if bad:
        raise ConfigError(f"{label}: prediction for row {bad[0]} is {predictions[bad[0]]!r}, not a finite number")
    history = (run.get("loss_history") or {}).get("values")
    if not isinstance(history, list) or not history or not all(_finite(v) for v in history):
        raise ConfigError(f"{label}: loss_history missing or not finite")
    config = run.get("config")
    if not isinstance(config, dict) or any(f not in config for f in CONFIG_FIELDS):
        raise ConfigError(f"{label}: config missing (need {', '.join(CONFIG_FIELDS)})")
    if not isinstance(run.get("weights_sha256"), str):
        raise ConfigError(f"{label}: weights_sha256 missing (a report older than this version)")


def config_mismatch(reference, run):
    """The first config field in which `run` differs from `reference`, or None."""
    for field in CONFIG_FIELDS:
        if reference["config"][field] != run["config"][field]:
            return field
    return None


def check_same_config(ref_label, reference, runs):
    for label, run in runs:
        field = config_mismatch(reference, run)
        if field:
            raise ConfigError(f"reports of different configs: {field} is {reference['config'][field]!r} in "
                              f"{ref_label} but {run['config'][field]!r} in {label}")


def where(run):
    """Short text: host, then the image or bundle it ran in, or the versions of a plain install."""
    origin = run.get("origin") or {}
    package = origin.get("package")
    if package:
        commit = package.get("git_commit", "")[:12]
        made = f"{package['name']}{'@' + commit if commit else ''}"
    else:
        v = run.get("versions", {})
        engine = "pytensor" if "pytensor" in v else "theano"
        made = f"{engine} {v.get(engine, '?')}, numpy {v.get('numpy', '?')}"
    return f"{origin.get('host', '?')} ({made})"


def compare(paths, reference=None, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL):
    """(the comparison as a dict of schema xor_gpu.compare/1, {label: run}, (reference label,
    reference run)). ConfigError for bad input."""
    check_tolerances(atol, rtol)
    if not paths:
        raise ConfigError("compare needs at least one report")
    runs = [run for path in paths for run in runs_of(path)]
    if reference is None:
        if len(runs) < 2:
            raise ConfigError("one run and no reference: give --reference FILE (or builtin) or more reports")
        ref_label, ref = runs[0]
        runs = runs[1:]
    else:
        ref_path = builtin_reference_path() if reference == BUILTIN else reference
        ref_runs = runs_of(ref_path)
        if len(ref_runs) != 1:
            raise ConfigError(f"{reference}: a reference must hold one training run, it holds {len(ref_runs)}")
        ref_label, ref = (BUILTIN if reference == BUILTIN else ref_runs[0][0]), ref_runs[0][1]
    check_same_config(ref_label, ref, runs)
    rows = []
    for label, run in runs:
        diff = differences(ref, run)
        rows.append({"label": label, "where": where(run), "device": run["device"],
                     "predictions": run["predictions"], "weights_sha256": run["weights_sha256"],
                     "converged": run["converged"], **diff,
                     "passed": within(diff, atol, rtol) and run["converged"]})
    return {"schema": COMPARE_SCHEMA, "config": {f: ref["config"][f] for f in CONFIG_FIELDS},
            "reference": {"label": ref_label, "where": where(ref), "device": ref["device"],
                          "weights_sha256": ref["weights_sha256"], "predictions": ref["predictions"]},
            "tolerances": {"atol_predictions": atol, "rtol_loss_history": rtol},
            "rows": rows, "passed": all(r["passed"] for r in rows)}, dict(runs), (ref_label, ref)


def format_table(result):
    tol = result["tolerances"]
    ref = result["reference"]
    lines = [f"reference: {ref['label']}  {ref['where']}  {ref['device']['active']} ({ref['device']['name']})  "
             f"sha256 {ref['weights_sha256'][:12]}",
             f"tolerances: |prediction diff| <= {tol['atol_predictions']:g}, "
             f"relative loss diff <= {tol['rtol_loss_history']:g}", ""]
    width = max([len("run")] + [len(r["label"]) for r in result["rows"]])
    head = (f"{'run':<{width}}  {'where':<32} {'device':<12} " + " ".join(f"{k:>9}" for k in ROWS)
            + f" {'max|dpred|':>11} {'max rel dloss':>13}  bitwise  converged  verdict")
    lines.append(head)
    for r in result["rows"]:
        lines.append(f"{r['label']:<{width}}  {r['where'][:32]:<32} {r['device']['active']:<12} "
                     + " ".join(f"{r['predictions'][k]:9.6f}" for k in ROWS)
                     + f" {r['max_abs_prediction_diff']:11.3g} {r['max_rel_loss_diff']:13.3g}  "
                     f"{'yes' if r['bitwise_equal'] else 'no':<8} {'yes' if r['converged'] else 'NO':<10} "
                     f"{'ok' if r['passed'] else 'FAIL'}")
    equal = sum(r["bitwise_equal"] for r in result["rows"])
    lines.append("")
    lines.append(f"{len(result['rows'])} runs: {equal} bitwise equal to the reference, "
                 f"{sum(r['passed'] for r in result['rows'])} within tolerance and converged")
    for r in result["rows"]:
        lines.append(f"  {r['label']}: {r['device']['name']}")
    return "\n".join(lines)


def main(paths, reference=None, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, json_path=None, plot_path=None):
    report.check_writable(json_path)
    report.check_plot_path(plot_path)
    result, runs, (ref_label, ref) = compare(paths, reference, atol, rtol)
    print(format_table(result))
    if json_path:
        report.write_json(json_path, result)
    if plot_path:
        from xor_gpu import plots

        plots.plot_runs(plot_path, runs, f"{len(runs)} runs against {os.path.basename(ref_label)}",
                        reference=(ref_label, ref), atol=atol, rtol=rtol)
    failed = [r["label"] for r in result["rows"] if not r["passed"]]
    if failed:
        raise CheckFailed(f"compare failed: {len(failed)} of {len(result['rows'])} runs outside tolerance "
                          f"or not converged: {', '.join(failed)}")
    print("compare: PASS")
    return 0
