"""Parity: the same config trained on several devices, each in its own process, compared.

Theano binds its device at import, so each device runs as a child `xor-gpu train`
process writing a JSON report; this module only reads and compares those reports.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

from xor_gpu import report
from xor_gpu.config import INPUTS, check_device
from xor_gpu.errors import ConfigError

# float32 on two devices differs by summation order and by each device's exp(); the seed
# config measured 1.2e-7 (predictions) and 2.2e-6 (relative loss) between CPU and PoCL,
# 5.7e-6 and 8.5e-5 between Theano float32 and the float64 oracle. The defaults leave room
# for other hardware while a real bug (gradient, draw order, lr) moves predictions by >1e-2.
DEFAULT_ATOL = 1e-4  # max |prediction difference| against the reference device
DEFAULT_RTOL = 1e-3  # max |loss difference| / |reference loss| over the sampled history


def train_child(config, json_path=None):
    """Train config.device in a fresh process; returns (exit status, its error line or "")."""
    cmd = [sys.executable, "-m", "xor_gpu", "train", "--device", config.device, "--floatx", config.floatx,
           "--hidden", str(config.hidden), "--lr", repr(config.lr), "--steps", str(config.steps),
           "--seed", str(config.seed)] + (["--json", json_path] if json_path else [])
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    error = lines[-1].removeprefix("xor-gpu: error: ") if lines and proc.returncode else ""
    return proc.returncode, error


def differences(reference, other):
    """Max |prediction difference| and max relative loss-history difference."""
    pred = max(abs(other["predictions"][k] - reference["predictions"][k]) for k in reference["predictions"])
    ref_loss, loss = reference["loss_history"]["values"], other["loss_history"]["values"]
    rel = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(loss, ref_loss))
    return {"max_abs_prediction_diff": pred, "max_rel_loss_diff": rel}


def format_table(reports, diffs, atol, rtol):
    devices = list(reports)
    width = max(14, *(len(d) + 2 for d in devices))
    head = "input    target" + "".join(f"{d:>{width}}" for d in devices)
    lines = [head]
    ref = reports[devices[0]]
    for row in INPUTS:
        key = report.row_key(row)
        lines.append(f"{key:<8} {ref['targets'][key]:>6}"
                     + "".join(f"{reports[d]['predictions'][key]:>{width}.8f}" for d in devices))
    lines.append("final loss     " + "".join(f"{reports[d]['final_loss']:>{width}.6g}" for d in devices))
    lines.append("steps/s        " + "".join(f"{reports[d]['steps_per_second']:>{width},.0f}" for d in devices))
    lines.append("converged      " + "".join(f"{'yes' if reports[d]['converged'] else 'NO':>{width}}" for d in devices))
    for d in devices:
        lines.append(f"{d}: {reports[d]['device']['name']}")
    for d, diff in diffs.items():
        lines.append(f"{d} vs {devices[0]}: max |prediction diff| {diff['max_abs_prediction_diff']:.3g} "
                     f"(tolerance {atol:g}), max relative loss diff {diff['max_rel_loss_diff']:.3g} "
                     f"(tolerance {rtol:g})")
    return "\n".join(lines)


def _check_args(devices, atol, rtol):
    if len(devices) < 2:
        raise ConfigError("parity needs at least two devices, e.g. --devices cpu,opencl0:0")
    for d in devices:
        check_device(d)
    if len(set(devices)) != len(devices):
        raise ConfigError(f"each device once, got {','.join(devices)}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def main(config, devices, atol, rtol, json_path=None, plot_path=None):
    _check_args(devices, atol, rtol)
    report.check_writable(json_path)
    report.check_plot_path(plot_path)
    reports, failures = {}, {}
    with tempfile.TemporaryDirectory(prefix="xor-gpu-parity-") as tmp:
        for device in devices:
            print(f"training on {device} ...", file=sys.stderr, flush=True)
            path = os.path.join(tmp, device.replace(":", "_") + ".json")
            status, message = train_child(config.replace(device=device), path)
            if status == 0:
                with open(path, encoding="utf-8") as f:
                    reports[device] = json.load(f)
            else:
                failures[device] = {"exit_status": status, "error": message}

    diffs = {}
    if not failures:
        ref = reports[devices[0]]
        diffs = {d: differences(ref, reports[d]) for d in devices[1:]}
        print(format_table(reports, diffs, atol, rtol))
    within = all(v["max_abs_prediction_diff"] <= atol and v["max_rel_loss_diff"] <= rtol for v in diffs.values())
    converged = all(r["converged"] for r in reports.values())
    passed = not failures and within and converged
    data = {
        "schema": report.PARITY_SCHEMA,
        "config": {k: v for k, v in config.to_dict().items() if k != "device"},
        "devices": devices,
        "reference": devices[0],
        "tolerances": {"atol_predictions": atol, "rtol_loss_history": rtol},
        "runs": reports,
        "failures": failures,
        "differences": diffs,
        "converged": converged,
        "passed": passed,
    }
    if json_path:
        report.write_json(json_path, data)
    if plot_path and reports:
        curves = {d: (r["loss_history"]["every"], r["loss_history"]["values"]) for d, r in reports.items()}
        report.plot_losses(plot_path, curves, f"XOR loss by device, {config.floatx}, {config.steps:,} steps")

    for device, failure in failures.items():
        print(f"xor-gpu: error: {device} failed (exit {failure['exit_status']}): {failure['error']}", file=sys.stderr)
    if failures:
        # A device that cannot be used is a setup problem (3), as in `train`.
        return 3 if any(f["exit_status"] == 3 for f in failures.values()) else 5
    problems = [text for ok, text in ((converged, "not every device converged"),
                                      (within, "devices differ by more than the tolerance")) if not ok]
    if problems:
        print(f"xor-gpu: error: parity failed: {'; '.join(problems)}", file=sys.stderr)
        return 5
    print(f"parity: PASS ({', '.join(devices)})")
    return 0
