"""Every text a person reads of a result: the tables and the verdict sentences of train,
parity, the seed sweep, check and compare (xor_gpu.results holds the results themselves)."""
from xor_gpu.config import CONVERGENCE_MARGIN, row_converged
from xor_gpu.results import NODE_STATUSES, ROWS, Difference


def yes(flag):
    return "yes" if flag else "NO"


def table(header, rows, align):
    """Columns as wide as their widest cell, two spaces apart; align: one "<" or ">" per column."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip() for r in cells]


def difference(diff, tolerances=None):
    """The sentence of one run against a reference: "max |prediction diff| 2.2e-08 (tolerance
    0.0001), max relative loss diff 1.3e-06 (tolerance 0.001), bitwise equal"."""
    pred, loss = f"{diff.max_abs_prediction_diff:.3g}", f"{diff.max_rel_loss_diff:.3g}"
    if tolerances is not None:
        pred, loss = f"{pred} (tolerance {tolerances.atol:g})", f"{loss} (tolerance {tolerances.rtol:g})"
    return (f"max |prediction diff| {pred}, max relative loss diff {loss}"
            f"{', bitwise equal' if diff.bitwise_equal else ''}")


def _modules(count):
    return "" if count is None else f" ({count} new modules)"


def train(report):
    """One training run: the truth table, then where and how fast it ran."""
    lines = table(["input", "target", "prediction", "ok"],
                  [[key, report["targets"][key], f"{pred:.6f}", yes(row_converged(pred, report["targets"][key]))]
                   for key, pred in report["predictions"].items()], "<>><")
    dev = report["device"]
    margin = report.get("convergence_margin", CONVERGENCE_MARGIN)
    lines += [
        f"final loss      {report['final_loss']:.6g}",
        f"engine          {report['config'].get('engine', 'theano')}",
        f"device          requested {dev['requested']}, active {dev['active']} ({dev['name']})",
        f"floatX          {report['floatX']}",
        f"compile         {report['compile_seconds']:.2f} s{_modules(report['new_compiled_modules'])}",
        f"first step      {report['first_step_seconds']:.2f} s (includes the device's kernel builds)",
        f"train           {report['train_seconds']:.2f} s, {report['steps_per_second']:,.0f} steps/s "
        f"({report['config']['steps']:,} steps)",
        f"converged       {yes(report['converged'])} (every prediction within {0.5 - margin:g} of its target)",
        f"weights sha256  {report['weights_sha256'][:16]}",
    ]
    return "\n".join(lines)


def seeds(data):
    """`train --seeds`: one line per seed, then how many converged."""
    runs = list(data["runs"].values())
    lines = table(["seed", "final loss", "converged", "weights sha256"],
                  [[r["config"]["seed"], f"{r['final_loss']:.6g}", yes(r["converged"]), r["weights_sha256"][:16]]
                   for r in runs], "<>><")
    lines.append(f"{sum(r['converged'] for r in runs)} of {len(runs)} seeds converged on {data['device']} "
                 f"({runs[0]['device']['name']}), {runs[0]['config']['steps']:,} steps each")
    return "\n".join(lines)


def parity(result):
    """The predictions side by side, then each run against the reference."""
    runs, devices = result.runs, result.devices
    ref = runs[result.reference]
    rows = [[key, ref["targets"][key], *(f"{runs[d]['predictions'][key]:.8f}" for d in devices)] for key in ROWS]
    rows += [["final loss", "", *(f"{runs[d]['final_loss']:.6g}" for d in devices)],
             ["steps/s", "", *(f"{runs[d]['steps_per_second']:,.0f}" for d in devices)],
             ["converged", "", *(yes(runs[d]["converged"]) for d in devices)]]
    lines = table(["input", "target", *devices], rows, "<>" + ">" * len(devices))
    lines += [f"{d}: {runs[d]['device']['name']}" for d in devices]
    lines += [against(d, result.reference, diff, result.tolerances) for d, diff in result.differences.items()]
    return "\n".join(lines)


def against(label, reference, diff, tolerances):
    """One run against the reference run, within the tolerances: "opencl0:0 vs cpu: max ..."."""
    return f"{label} vs {reference}: {difference(diff, tolerances)}"


def sweep(result):
    """Per seed: where it converged, and each run's max |prediction diff| to the reference."""
    devices, groups = result.devices, result.groups()
    rows = [[seed, " ".join("Y" if row["converged"][d] else "-" for d in devices),
             *("0 (bitwise)" if v.bitwise_equal else f"{v.max_abs_prediction_diff:.3g}"
               for v in (row["differences"][d] for d in devices[1:]))]
            for seed, row in result.matrix.items()]
    lines = table(["seed", "converged", *devices[1:]], rows, "<<" + ">" * (len(devices) - 1))
    lines.append(f"(converged: Y or - for {', '.join(devices)}; columns: max |prediction diff| "
                 f"against {result.reference})")
    lines.append(f"{len(result.seeds)} seeds: {len(groups['converged_everywhere'])} converged on every device, "
                 f"{len(groups['converged_nowhere'])} on none, {len(groups['disagree'])} disagreements, "
                 f"{len(groups['beyond_tolerance'])} beyond the tolerance")
    diffs = result.differences()
    if diffs:
        worst = Difference(max(d.max_abs_prediction_diff for d in diffs), max(d.max_rel_loss_diff for d in diffs),
                           False)
        lines.append(f"{difference(worst, result.tolerances)}, "
                     f"{sum(d.bitwise_equal for d in diffs)} of {len(diffs)} runs bitwise equal")
    return "\n".join(lines)


def _node_status(node):
    detail = f" at {node.failed_step}" if node.status == "FAIL" and node.failed_step else ""
    reason = f": {node.reason}" if node.status != "PASS" and node.reason else ""
    return f"{node.status}{detail}{reason}"


def fleet(nodes):
    """One row per report given (a machine, a Slurm task), its status, and a closing count."""
    rows = [[n.report, n.node or "?", n.device or "?", n.gpu or "-", n.driver or "-", n.nvrtc or "-",
             n.cublas or "-", n.runs, _node_status(n)] for n in nodes]
    lines = table(["report", "node", "device", "gpu", "driver", "nvrtc", "cublas", "runs", "status"], rows,
                  "<<<<<<<><")
    counts = {s: sum(n.status == s for n in nodes) for s in NODE_STATUSES}
    lines.append(f"fleet: {len(nodes)} node{'s' if len(nodes) != 1 else ''}: "
                 + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return lines


def comparison(result):
    """compare: the reference, every run against it, then the fleet of nodes."""
    lines = []
    if result.reference is not None:
        ref, tol = result.reference, result.tolerances
        lines += [f"reference: {ref.label}  {ref.where()}  {ref['device']['active']} ({ref['device']['name']})  "
                  f"sha256 {ref['weights_sha256'][:12]}",
                  f"tolerances: |prediction diff| <= {tol.atol:g}, relative loss diff <= {tol.rtol:g}", ""]
    if result.rows:
        rows = [[r.label, r.where, r.device["active"], *(f"{r.predictions[k]:.6f}" for k in ROWS),
                 f"{r.difference.max_abs_prediction_diff:.3g}", f"{r.difference.max_rel_loss_diff:.3g}",
                 "yes" if r.difference.bitwise_equal else "no", yes(r.converged), "ok" if r.passed else "FAIL"]
                for r in result.rows]
        lines += table(["run", "where", "device", *ROWS, "max|dpred|", "max rel dloss", "bitwise", "converged",
                        "verdict"], rows, "<<<" + ">" * 6 + "<<<")
        lines += ["", f"{len(result.rows)} runs: {sum(r.difference.bitwise_equal for r in result.rows)} bitwise "
                      f"equal to the reference, {sum(r.passed for r in result.rows)} within tolerance and converged"]
        lines += [f"  {r.label}: {r.device['name']}" for r in result.rows]
        lines.append("")
    else:
        lines += ["no training runs to compare", ""]
    lines += fleet(result.nodes)
    return "\n".join(lines)


def check_step(number, total, step):
    """check's progress line of a finished step: "[2/5] train        PASSED   converged, ..."."""
    return (f"[{number}/{total}] {step.name:<12} {step.status.upper():<8} {step.summary} "
            f"({step.seconds:.1f} s)")


def check_train(report):
    """The train step's summary: did the seed config converge, and how fast."""
    return (f"{'converged' if report['converged'] else 'did NOT converge'}, final loss {report['final_loss']:.6g}, "
            f"{report['steps_per_second']:,.0f} steps/s on {report['device']['name']}")


def check_determinism(diff):
    """The determinism step's summary: the repeat against the first run."""
    return ("two runs ended with bitwise-identical weights" if diff.bitwise_equal else
            f"two runs differ: {difference(diff)}")


def check_reference(diffs):
    """The reference step's summary: each run against the committed reference."""
    return "; ".join(f"{name}: {difference(d)}" for name, d in diffs.items()) or "no run to compare"


def check_result(summary, path):
    """check's closing line, in its log."""
    overlap = summary.overlap_seconds
    beside = f", {overlap:.1f} s of it two trainings at once" if overlap else ""
    return f"RESULT: {summary.status.upper()} in {summary.wall_seconds:.1f} s{beside}; summary in {path}"


def passed(what):
    """The closing line of a command whose verdict passed."""
    return f"{what}: PASS"
