"""Parity: the same config trained on several devices, each in its own process, compared.

Theano binds its device at import, so each device runs as a child `xor-gpu train`
(xor_gpu.child); this module compares their reports with the first device's.
"""
import sys

from xor_gpu import child, engines, report
from xor_gpu.compare import check_tolerances, differences, within
from xor_gpu.config import INPUTS, check_device
from xor_gpu.errors import CheckFailed, ConfigError, DeviceError


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
                     f"(tolerance {rtol:g}){', bitwise equal' if diff['bitwise_equal'] else ''}")
    return "\n".join(lines)


def check_args(devices, atol, rtol):
    if len(devices) < 2:
        raise ConfigError("parity needs at least two devices, e.g. --devices cpu,opencl0:0")
    for d in devices:
        check_device(d)
    if len(set(devices)) != len(devices):
        raise ConfigError(f"each device once, got {','.join(devices)}")
    check_tolerances(atol, rtol)


def runs_of(devices=None, runs=None):
    """{label: (engine, device)} of `--devices` (Theano runs, named by device) or `--runs`."""
    if runs is None:
        return {d: (engines.DEFAULT, d) for d in devices}
    return {engines.label(e, d): (e, d) for e, d in runs}


def train_each(config, runs, seeds=None):
    """Train config once per run, each in its own child process with its engine's Python.
    Returns ({label: report}, {label: failure}); a failed run does not stop the others."""
    for engine, _ in runs.values():  # a missing engine environment: exit 3 before any training
        engines.python_for(engine)
    reports, failures = {}, {}
    for label, (engine, device) in runs.items():
        what = f"{len(seeds)} seeds on {label}" if seeds else label
        print(f"training {what} ...", file=sys.stderr, flush=True)
        run = child.train(config.replace(engine=engine, device=device), seeds=seeds)
        if run.ok:
            reports[label] = run.report
            print(f"{label}: done in {run.seconds:.1f} s", file=sys.stderr, flush=True)
        else:
            failures[label] = {"exit_status": run.exit_status, "error": run.error}
    return reports, failures


def assess(config, devices, reports, failures, atol, rtol):
    """The parity report (schema xor_gpu.parity/1) of runs already made; devices[0] is the reference."""
    diffs = {}
    if not failures:
        ref = reports[devices[0]]
        diffs = {d: differences(ref, reports[d]) for d in devices[1:]}
    converged = all(r["converged"] for r in reports.values())
    return {
        "schema": report.PARITY_SCHEMA,
        "config": {k: v for k, v in config.to_dict().items() if k not in ("device", "engine")},
        "devices": devices,
        "reference": devices[0],
        "tolerances": {"atol_predictions": atol, "rtol_loss_history": rtol},
        "runs": reports,
        "failures": failures,
        "differences": diffs,
        "converged": converged,
        "passed": not failures and converged and all(within(v, atol, rtol) for v in diffs.values()),
    }


def raise_for_failures(failures):
    """Runs that did not finish: DeviceError when a device could not be used (a setup problem,
    as in `train`), else CheckFailed."""
    if failures:
        text = "; ".join(f"{d} failed (exit {f['exit_status']}): {f['error']}" for d, f in failures.items())
        raise (DeviceError if any(f["exit_status"] == DeviceError.exit_status for f in failures.values())
               else CheckFailed)(text)


def verdict(data):
    """Raise the error that matches a failed parity report (DeviceError when a device could not be used)."""
    raise_for_failures(data["failures"])
    problems = [text for ok, text in (
        (data["converged"], "not every device converged"),
        (all(within(v, data["tolerances"]["atol_predictions"], data["tolerances"]["rtol_loss_history"])
             for v in data["differences"].values()), "devices differ by more than the tolerance")) if not ok]
    if problems:
        raise CheckFailed(f"parity failed: {'; '.join(problems)}")


def plot(path, data):
    from xor_gpu import plots

    config = data["config"]
    plots.plot_runs(path, data["runs"], f"XOR loss by device, {config['floatx']}, {config['steps']:,} steps",
                    reference=data["reference"], atol=data["tolerances"]["atol_predictions"],
                    rtol=data["tolerances"]["rtol_loss_history"])


def main(config, runs, atol, rtol, json_path=None, plot_path=None):
    """runs: {label: (engine, device)}, the first the reference (runs_of())."""
    devices = list(runs)
    check_tolerances(atol, rtol)
    report.check_writable(json_path)
    report.check_plot_path(plot_path)
    reports, failures = train_each(config, runs)
    data = assess(config, devices, reports, failures, atol, rtol)
    if not failures:
        print(format_table(reports, data["differences"], atol, rtol))
    if json_path:
        report.write_json(json_path, data)
    if plot_path and reports:
        plot(plot_path, data)
    verdict(data)
    print(f"parity: PASS ({', '.join(devices)})")
    return 0
