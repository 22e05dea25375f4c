"""compare's text: every run against the reference, then the fleet of nodes; alike runs and
passed nodes as one row when there are more than a screen holds."""
import re

from xor_gpu.problem import ROWS
from xor_gpu.render import table, yes
from xor_gpu.results.check import FAILED
from xor_gpu.results.fleet import NODE_OF_CHECK, NODE_PASS, NODE_STATUSES, alike, node_kind, row_kind


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
