"""Every text a person reads of a result: the tables and the verdict sentences of train,
parity, the seed sweep, check and compare (xor_gpu.results holds the results themselves)."""
import re

from xor_gpu.problem import CONVERGENCE_MARGIN, ROWS, row_converged
from xor_gpu.results.check import FAILED
from xor_gpu.results.fleet import NODE_OF_CHECK, NODE_PASS, NODE_STATUSES, alike, node_kind, row_kind


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


def cudnn(record):
    """What a CUDA run did with cuDNN, in words (record: backend.cudnn_of's)."""
    if not record:
        return "not used (not a CUDA run)"
    found = f"cuDNN {record['version']} found" if record.get("library") else "no cuDNN found"
    if not record["enabled"]:
        return f"off ({found}; THEANO_FLAGS=dnn.enabled=True to use it)"
    return f"{'used' if record['used'] else 'enabled, not used'} ({found})"


def nvrtc_arch(record):
    """What xor_gpu's NVRTC front did (record: an NvrtcArch, or None), in words."""
    if not record:
        return "as libgpuarray asked"
    return (f"{record.compiled_for}, given in full by xor_gpu's NVRTC front ({record.compilations} compilations; "
            f"libgpuarray asked for {record.asked})")


def _modules(count):
    return "" if count is None else f" ({count} new modules)"


def train(report):
    """One training run (a TrainReport): the truth table, then where and how fast it ran."""
    lines = table(["input", "target", "prediction", "ok"],
                  [[key, report.targets[key], f"{pred:.6f}", yes(row_converged(pred, report.targets[key]))]
                   for key, pred in report.predictions.items()], "<>><")
    dev = report.device
    margin = CONVERGENCE_MARGIN if report.convergence_margin is None else report.convergence_margin
    lines += [
        f"final loss      {report.final_loss:.6g}",
        f"engine          {report.engine or 'theano'}",  # reports older than engines were Theano's
        f"device          requested {dev.requested}, active {dev.active} ({dev.name})",
        f"floatX          {report.floatX}",
        f"compile         {report.compile_seconds:.2f} s{_modules(report.new_compiled_modules)}",
        f"first step      {report.first_step_seconds:.2f} s (includes the device's kernel builds)",
        f"train           {report.train_seconds:.2f} s, {report.steps_per_second:,.0f} steps/s "
        f"({report.steps:,} steps)",
        f"converged       {yes(report.converged)} (every prediction within {0.5 - margin:g} of its target)",
        f"weights sha256  {report.weights_sha256[:16]}",
    ]
    if report.cudnn:
        lines.insert(-2, f"cudnn           {cudnn(report.cudnn)}")
    if report.nvrtc_arch:
        lines.insert(-2, f"nvrtc arch      {nvrtc_arch(report.nvrtc_arch)}")
    return "\n".join(lines)


def seeds(data):
    """`train --seeds` (a SeedsReport): one line per seed, then how many converged."""
    runs = list(data.runs.values())
    lines = table(["seed", "final loss", "converged", "weights sha256"],
                  [[r.seed, f"{r.final_loss:.6g}", yes(r.converged), r.weights_sha256[:16]] for r in runs], "<>><")
    lines.append(f"{sum(r.converged for r in runs)} of {len(runs)} seeds converged on {data.device} "
                 f"({runs[0].device.name}), {runs[0].steps:,} steps each")
    return "\n".join(lines)


def parity(result):
    """The predictions side by side, then each run against the reference."""
    runs, devices = result.runs, result.devices
    ref = runs[result.reference]
    rows = [[key, ref.targets[key], *(f"{runs[d].predictions[key]:.8f}" for d in devices)] for key in ROWS]
    rows += [["final loss", "", *(f"{runs[d].final_loss:.6g}" for d in devices)],
             ["steps/s", "", *(f"{runs[d].steps_per_second:,.0f}" for d in devices)],
             ["converged", "", *(yes(runs[d].converged) for d in devices)]]
    lines = table(["input", "target", *devices], rows, "<>" + ">" * len(devices))
    lines += [f"{d}: {runs[d].device.name}" for d in devices]
    lines += [against(d, result.reference, diff, result.tolerances) for d, diff in result.differences.items()]
    return "\n".join(lines)


def against(label, reference, diff, tolerances):
    """One run against the reference run, within the tolerances: "opencl0:0 vs cpu: max ..."."""
    return f"{label} vs {reference}: {difference(diff, tolerances)}"


def sweep(result):
    """Per seed: where it converged, and each run's max |prediction diff| to the reference."""
    devices, groups = result.devices, result.groups()
    rows = [[row.seed, " ".join("Y" if row.converged[d] else "-" for d in devices),
             *("0 (bitwise)" if v.bitwise_equal else f"{v.max_abs_prediction_diff:.3g}"
               for v in (row.differences[d] for d in devices[1:]))]
            for row in result.rows]
    lines = table(["seed", "converged", *devices[1:]], rows, "<<" + ">" * (len(devices) - 1))
    lines.append(f"(converged: Y or - for {', '.join(devices)}; columns: max |prediction diff| "
                 f"against {result.reference})")
    lines.append(f"{len(result.seeds)} seeds: {len(groups['converged_everywhere'])} converged on every device, "
                 f"{len(groups['converged_nowhere'])} on none, {len(groups['disagree'])} disagreements, "
                 f"{len(groups['beyond_tolerance'])} beyond the tolerance")
    diffs, worst = result.differences(), result.worst()
    if worst:
        lines.append(f"{difference(worst, result.tolerances)}, "
                     f"{sum(d.bitwise_equal for d in diffs)} of {len(diffs)} runs bitwise equal")
    return "\n".join(lines)


def _node_status(node):
    detail = f" at {node.failed_step}" if node.status == NODE_OF_CHECK[FAILED] and node.failed_step else ""
    reason = f": {node.reason}" if node.status != NODE_PASS and node.reason else ""
    return f"{node.status}{detail}{reason}"


# compare shows every run and node while they fit on a screen; beyond, runs and passed nodes
# that are alike (results.row_kind, node_kind) share one row, a node that did not pass keeps
# its own, first. --all shows every row; the JSON always holds every one.
SCREEN = 40


def _groups(items, every, kind, passed):
    """[[item, ...], ...]: each item alone (`every`), else alike items (kind) together, the
    groups that did not pass first."""
    return [[i] for i in items] if every else sorted(alike(items, kind), key=lambda g: passed(g[0]))


def _alike(first, group):
    return f"{first} (+{len(group) - 1} alike)" if len(group) > 1 else first


def hosts(names, most=6):
    """Host names compactly: gpu[001-003,007], vm (x3); at most `most` entries, then how many more."""
    counts, ranges, plain = {}, {}, []
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    for name in counts:
        match = re.fullmatch(r"(.*?)(\d+)", name or "?")
        if match and counts[name] == 1:
            ranges.setdefault((match[1], len(match[2])), []).append(int(match[2]))
        else:
            plain.append(f"{name} (x{counts[name]})" if counts[name] > 1 else str(name))
    for (prefix, width), numbers in ranges.items():
        numbers.sort()
        spans, start = [], numbers[0]
        for a, b in zip(numbers, numbers[1:] + [None]):
            if b != a + 1:
                spans.append(f"{start:0{width}d}" + (f"-{a:0{width}d}" if a != start else ""))
                start = b
        plain.append(f"{prefix}[{','.join(spans)}]" if len(numbers) > 1 else f"{prefix}{numbers[0]:0{width}d}")
    return ", ".join(plain[:most]) + (f" and {len(plain) - most} more" if len(plain) > most else "")


def fleet(nodes, every=True):
    """One row per report given (a machine, a Slurm task), its status, and a closing count;
    `every` False: the nodes that did not pass first, then one row per kind of passed node."""
    groups = _groups(nodes, every, node_kind, lambda n: n.status == NODE_PASS)
    rows = [[_alike(g[0].report, g), hosts([n.node for n in g]) if len(g) > 1 else g[0].node or "?", g[0].device or "?",
             g[0].gpu or "-", g[0].driver or "-", g[0].libraries or "-", g[0].runs, _node_status(g[0])] for g in groups]
    lines = table(["report", "node", "device", "gpu", "driver", "gpu libraries", "runs", "status"], rows,
                  "<<<<<<><")
    counts = {s: sum(n.status == s for n in nodes) for s in NODE_STATUSES}
    lines.append(f"fleet: {len(nodes)} node{'s' if len(nodes) != 1 else ''}: "
                 + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return lines


def comparison(result, every=None):
    """compare: the reference, every run against it, then the fleet of nodes. every: None shows
    every row while they fit on a screen, else alike rows as one; True every row, always."""
    every = every or (every is None and len(result.rows) * 2 + len(result.nodes) <= SCREEN)
    lines = []
    if result.reference is not None:
        ref, tol = result.reference, result.tolerances
        lines += [f"reference: {ref.label}  {ref.where()}  {ref.report.device.active} ({ref.report.device.name})  "
                  f"sha256 {ref.report.weights_sha256[:12]}",
                  f"tolerances: |prediction diff| <= {tol.atol:g}, relative loss diff <= {tol.rtol:g}", ""]
    if result.rows:
        groups = _groups(result.rows, every, row_kind, lambda r: r.passed)
        rows = [[_alike(g[0].label, g), g[0].where, g[0].device.active,
                 *(f"{g[0].predictions[k]:.6f}" for k in ROWS), f"{g[0].difference.max_abs_prediction_diff:.3g}",
                 f"{g[0].difference.max_rel_loss_diff:.3g}", "yes" if g[0].difference.bitwise_equal else "no",
                 yes(g[0].converged), "ok" if g[0].passed else "FAIL"] for g in groups]
        lines += table(["run", "where", "device", *ROWS, "max|dpred|", "max rel dloss", "bitwise", "converged",
                        "verdict"], rows, "<<<" + ">" * 6 + "<<<")
        lines += ["", f"{len(result.rows)} runs: {sum(r.difference.bitwise_equal for r in result.rows)} bitwise "
                      f"equal to the reference, {sum(r.passed for r in result.rows)} within tolerance and converged"]
        lines += [f"  {_alike(g[0].label, g)}: {g[0].device.name}" for g in groups]
        lines.append("")
    else:
        lines += ["no training runs to compare", ""]
    lines += fleet(result.nodes, every)
    if not every:
        lines.append("(alike runs and passed nodes shown as one row; --all shows every row, --json holds every one)")
    return "\n".join(lines)


def check_step(number, total, step):
    """check's progress line of a finished step: "[2/5] train        PASSED   converged, ..."."""
    return (f"[{number}/{total}] {step.name:<12} {step.status.upper():<8} {step.summary} "
            f"({step.seconds:.1f} s)")


def check_train(report):
    """The train step's summary: did the seed config converge, and how fast."""
    return (f"{'converged' if report.converged else 'did NOT converge'}, final loss {report.final_loss:.6g}, "
            f"{report.steps_per_second:,.0f} steps/s on {report.device.name}")


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
