"""The text a person reads of a result: the tables and the verdict sentences of train,
parity, the seed sweep and check, and the sentences and tables every command's text shares
(xor_gpu.results holds the results themselves). compare's is render_compare.py's, doctor's
render_doctor.py's: `train` loads neither."""
from xor_gpu.problem import CONVERGENCE_MARGIN, ROWS, row_converged


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
    """What a CUDA run did with cuDNN, in words (record: a Cudnn, or None off CUDA)."""
    if not record:
        return "not used (not a CUDA run)"
    found = f"cuDNN {record.version} found" if record.library else "no cuDNN found"
    if not record.enabled:
        return f"off ({found}; THEANO_FLAGS=dnn.enabled=True to use it)"
    return f"{'used' if record.used else 'enabled, not used'} ({found})"


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
