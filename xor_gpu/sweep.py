"""`xor-gpu parity --seeds`: parity over many seeds, one matrix of seeds and devices.

Each device trains every seed in one child process (`xor-gpu train --seeds`: one
compilation serves them all), and each seed's run is compared with the reference device's
run of the same seed. A seed fails parity when its runs disagree on convergence, or when
they all converge and differ by more than the tolerance. A seed that converges on no run
is reported as such, not as a failure: from an unlucky start the network stalls, and
stalled runs drift apart without telling anything about the devices.
"""
import sys

from xor_gpu import report
from xor_gpu.compare import check_tolerances, differences, within
from xor_gpu.errors import CheckFailed
from xor_gpu.parity import raise_for_failures, train_each

RUN_FIELDS = ("predictions", "final_loss", "converged", "weights_sha256", "steps_per_second")


def assess(config, devices, seeds, sweeps, failures, atol, rtol):
    """The sweep report (schema xor_gpu.parity-seeds/1) of runs already made; devices[0] is the reference."""
    ref, matrix = devices[0], {}
    groups = {"disagree": [], "beyond_tolerance": [], "converged_nowhere": [], "converged_everywhere": []}
    for seed in seeds if not failures else []:
        runs = {d: sweeps[d]["runs"][str(seed)] for d in devices}
        converged = {d: r["converged"] for d, r in runs.items()}
        diffs = {d: differences(runs[ref], runs[d]) for d in devices[1:]}
        if len(set(converged.values())) > 1:
            groups["disagree"].append(seed)
        elif not any(converged.values()):
            groups["converged_nowhere"].append(seed)
        else:
            groups["converged_everywhere"].append(seed)
            if not all(within(v, atol, rtol) for v in diffs.values()):
                groups["beyond_tolerance"].append(seed)
        matrix[str(seed)] = {"converged": converged, "differences": diffs}
    return {
        "schema": report.SWEEP_SCHEMA,
        "config": {k: v for k, v in config.to_dict().items() if k not in ("device", "engine", "seed")},
        "devices": devices,
        "reference": ref,
        "seeds": seeds,
        "tolerances": {"atol_predictions": atol, "rtol_loss_history": rtol},
        "device_names": {d: s["runs"][str(seeds[0])]["device"]["name"] for d, s in sweeps.items()},
        "runs": {d: {k: {f: r[f] for f in RUN_FIELDS} for k, r in s["runs"].items()} for d, s in sweeps.items()},
        "failures": failures,
        "matrix": matrix,
        **groups,
        "passed": not failures and not groups["disagree"] and not groups["beyond_tolerance"],
    }


def format_table(data):
    devices, ref = data["devices"], data["reference"]
    width, marks_width = max(14, *(len(d) + 2 for d in devices)), max(10, 2 * len(devices))
    lines = [f"{'seed':<10} {'converged':<{marks_width}}" + "".join(f"{d:>{width}}" for d in devices[1:])]
    for seed, row in data["matrix"].items():
        marks = " ".join("Y" if row["converged"][d] else "-" for d in devices)
        diffs = "".join(f"{_diff_text(row['differences'][d]):>{width}}" for d in devices[1:])
        lines.append(f"{seed:<10} {marks:<{marks_width}}{diffs}")
    lines.append(f"(converged: Y or - for {', '.join(devices)}; columns: max |prediction diff| against {ref})")
    worst = [v for row in data["matrix"].values() for v in row["differences"].values()]
    n = len(data["seeds"])
    lines.append(f"{n} seeds: {len(data['converged_everywhere'])} converged on every device, "
                 f"{len(data['converged_nowhere'])} on none, {len(data['disagree'])} disagreements, "
                 f"{len(data['beyond_tolerance'])} beyond the tolerance")
    if worst:
        lines.append(f"max |prediction diff| {max(v['max_abs_prediction_diff'] for v in worst):.3g} "
                     f"(tolerance {data['tolerances']['atol_predictions']:g}), max relative loss diff "
                     f"{max(v['max_rel_loss_diff'] for v in worst):.3g} "
                     f"(tolerance {data['tolerances']['rtol_loss_history']:g}), "
                     f"{sum(v['bitwise_equal'] for v in worst)} of {len(worst)} runs bitwise equal")
    return "\n".join(lines)


def _diff_text(diff):
    return "0 (bitwise)" if diff["bitwise_equal"] else f"{diff['max_abs_prediction_diff']:.3g}"


def verdict(data):
    raise_for_failures(data["failures"])
    problems = [f"{what} on seed{'s' if len(seeds) > 1 else ''} {_seed_list(seeds)}"
                for what, seeds in (("devices disagree on convergence", data["disagree"]),
                                    ("devices differ by more than the tolerance", data["beyond_tolerance"]))
                if seeds]
    if problems:
        raise CheckFailed(f"parity failed: {'; '.join(problems)}")


def _seed_list(seeds, most=10):
    text = ",".join(map(str, seeds[:most]))
    return text + (f" and {len(seeds) - most} more" if len(seeds) > most else "")


def main(config, runs, seeds, atol, rtol, json_path=None, plot_path=None):
    """runs: {label: (engine, device)}, the first the reference (parity.runs_of())."""
    devices = list(runs)
    check_tolerances(atol, rtol)
    report.check_writable(json_path)
    report.check_plot_path(plot_path)
    sweeps, failures = train_each(config, runs, seeds)
    for label, data in sweeps.items():
        converged = sum(r["converged"] for r in data["runs"].values())
        print(f"{label}: {converged} of {len(seeds)} seeds converged", file=sys.stderr)
    data = assess(config, devices, seeds, sweeps, failures, atol, rtol)
    if not failures:
        print(format_table(data))
    if json_path:
        report.write_json(json_path, data)
    if plot_path and not failures:
        from xor_gpu import plots

        plots.plot_seeds(plot_path, data)
    verdict(data)
    print(f"parity: PASS ({', '.join(devices)}; {len(seeds)} seeds)")
    return 0
