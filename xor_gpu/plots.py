"""The one figure that train, parity, check and compare draw.

Panel 1: the loss curves. With a reference run, panel 2: each run's relative loss-history
difference to the reference against rtol, and panel 3: each run's max |prediction difference|
against atol, with the margin (how many times inside the tolerance) written on each bar.
Exact zeros cannot sit on a log axis: they are drawn apart and named, never as a fake floor.
"""
import math

import numpy as np

from xor_gpu.errors import ConfigError
from xor_gpu.files import check_writable, write_atomically
from xor_gpu.results.runs import max_prediction_difference, relative_loss_differences

# A loss curve spanning less than this ratio reads better on a linear axis.
LOG_SPAN = 20
LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5}
# Above this many runs, the loss panel names only the reference (each run is named below).
FLEET = 8
WITHIN, OVER, NO_TOL, REFERENCE, TOL_LINE = "tab:green", "tab:red", "tab:blue", "black", "crimson"


def available():
    """Whether matplotlib imports (an optional dependency: pip install 'xor_gpu[plot]')."""
    try:
        import matplotlib  # noqa: F401  (a broken install fails here, not after training)
    except ImportError:
        return False
    return True


def check_path(path):
    """A --plot path (None: no plot) before anything runs: writable, a PNG's name, and
    matplotlib there to draw it."""
    check_writable(path)
    if path is not None and not str(path).lower().endswith(".png"):
        raise ConfigError(f"--plot {path}: plots are PNG images; give a path ending in .png")
    if path is not None and not available():
        raise ConfigError("--plot needs matplotlib: pip install 'xor_gpu[plot]'")


def loss_axis_scale(values):
    """"log" when the values span a wide range (and are all positive), else "linear"."""
    lo, hi = min(values), max(values)
    return "log" if lo > 0 and hi / lo > LOG_SPAN else "linear"


def within(diff, tol):
    return tol is None or diff <= tol


def _times(ratio):
    """850.3 -> "850", 12345 -> "12,000", 2.46 -> "2.5": two significant digits, no exponent."""
    return f"{float(f'{ratio:.2g}'):,.0f}" if ratio >= 10 else f"{ratio:.2g}"


def margin_text(diff, tol):
    """What a user looks for: how far inside (or over) the tolerance a difference lies."""
    if diff == 0:
        return "0: bitwise equal"
    if tol is None:
        return f"{diff:.2g}"
    if diff <= tol:
        return f"{diff:.2g}: {_times(tol / diff)}x inside"
    if tol == 0:
        return f"{diff:.2g}: OVER tolerance 0"
    return f"{diff:.2g}: {_times(diff / tol)}x OVER"


def _split(runs, reference):
    """(reference label, reference report, the runs compared with it)."""
    if reference is None:
        return None, None, dict(runs)
    if isinstance(reference, str):
        return reference, runs[reference], {k: v for k, v in runs.items() if k != reference}
    label, ref = reference
    return label, ref, dict(runs)


def _colors(n):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    return [cmap(i) if n <= 20 else cmap(i / max(n - 1, 1)) for i in range(n)]


def _steps(report, n=None):
    history = report.loss_history
    return np.arange(len(history.values) if n is None else n) * history.every


def _legend(ax, n):
    """Outside the axes on the right, so curves are never hidden; smaller for a fleet."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False,
                     fontsize=8 if n <= FLEET else 7, handlelength=1.8)


def _log_limits(values, tol):
    """Whole decades around the nonzero values and the tolerance line."""
    points = [v for v in values if v > 0] + ([tol] if tol else [])
    if not points:
        return 1e-10, 1e-2
    return 10.0 ** math.floor(math.log10(min(points)) - 0.3), 10.0 ** math.ceil(math.log10(max(points)) + 0.3)


def _tolerance_line(ax, tol, name, vertical=False):
    if not tol:
        return  # None: not given; 0 cannot sit on a log axis (every nonzero bar is then OVER)
    import matplotlib.transforms as mtransforms

    if vertical:
        ax.axvline(tol, color=TOL_LINE, linestyle="--", linewidth=1.5, zorder=3, gid=f"tolerance-{name}")
        ax.text(tol * 1.1, 0.96, f"tolerance {name} {tol:g}", color=TOL_LINE, ha="left", va="top", fontsize=8,
                fontweight="bold", bbox=LABEL_BOX,
                transform=mtransforms.blended_transform_factory(ax.transData, ax.transAxes))
    else:
        ax.axhline(tol, color=TOL_LINE, linestyle="--", linewidth=1.5, zorder=3, gid=f"tolerance-{name}")
        ax.text(0.995, tol, f"tolerance {name} {tol:g}", color=TOL_LINE, ha="right", va="bottom", fontsize=8,
                fontweight="bold", bbox=LABEL_BOX,
                transform=mtransforms.blended_transform_factory(ax.transAxes, ax.transData))


def _plain_numbers(axis):
    """Tick labels as a user writes numbers: 60,000 and 0.05, never 6x10^4 or an offset."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.12g}"))


def _loss_panel(ax, ref_label, ref, others, colors):
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter

    ref_name = ref_label if ref_label is None or "reference" in ref_label else f"{ref_label} (reference)"
    curves = [(ref_name, ref, REFERENCE, "-", 2.6)] if ref is not None else []
    single = ref is None and len(others) == 1
    curves += [(label, r, c, "-" if single else "--", 1.8 if single else 1.2)
               for (label, r), c in zip(others.items(), colors)]
    for label, r, color, style, width in curves:
        ax.plot(_steps(r), r.loss_history.values, label=label, color=color, linestyle=style, linewidth=width)
    ax.set_yscale(loss_axis_scale([v for _, r, *_ in curves for v in r.loss_history.values]))
    if ax.get_yscale() == "log":
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    _plain_numbers(ax.yaxis)
    _plain_numbers(ax.xaxis)
    ax.set_ylabel("loss\n(sum of squared errors)")
    ax.set_xlabel("step")
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > FLEET:
        # The panels below name every run in its colour; here only the reference is named.
        handles = [Line2D([], [], color=REFERENCE, linewidth=2.6), Line2D([], [], color="gray", linestyle="--")]
        ax.legend(handles, [ref_name or "", f"{len(others)} runs (colours as below)"], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False, fontsize=8)
    elif not single:
        _legend(ax, len(curves))


CHAR_INCHES = 0.06  # about one character of a 7-8 pt label
STRIP_ROW = 0.05  # inches per run on the strip of exact zeros


def _strip_inches(n):
    return 0.2 + STRIP_ROW * n


def _loss_difference_panel(ax, ref_label, ref, others, colors, rtol, height):
    """height: the log axis' height in inches, the strip of exact zeros hangs below it."""
    from matplotlib.ticker import LogLocator

    ref_values = ref.loss_history.values
    n = len(others)
    # Exact zeros go on a strip of their own under the log axis, one row per run.
    strip_height = _strip_inches(n) / height
    strip = ax.inset_axes([0, -0.03 - strip_height, 1, strip_height], sharex=ax)
    nonzero = []
    for row, ((label, r), color) in enumerate(zip(others.items(), colors)):
        rel, zero = relative_loss_differences(ref_values, r.loss_history.values)
        steps = _steps(r, len(rel))
        if zero.all():
            text = f"{label}: bitwise equal"
        else:
            text = f"{label}: max {margin_text(rel.max(), rtol)}"
            nonzero += list(rel[~zero])
        # NaN breaks the line at exact zeros instead of joining its neighbours through them.
        ax.plot(steps, np.where(zero, np.nan, rel), color=color, linewidth=1.0 if n <= FLEET else 0.7,
                marker=".", markersize=2.5 if n <= FLEET else 1.5, label=text)
        strip.plot(steps[zero], np.full(zero.sum(), row), linestyle="none", marker="|",
                   markersize=min(8, 0.9 * STRIP_ROW * 72), markeredgewidth=1.2, color=color,
                   gid="exactly-equal")
    ax.set_yscale("log")
    ax.set_ylim(*_log_limits(nonzero, rtol))
    ax.yaxis.set_major_locator(LogLocator(numticks=8))
    _tolerance_line(ax, rtol, "rtol")
    if not nonzero:
        ax.text(0.5, 0.3, f"every sampled loss is bitwise equal to {ref_label}'s", transform=ax.transAxes,
                ha="center", va="center", fontsize=11, color=WITHIN, fontweight="bold")
    ax.set_ylabel("|loss - reference loss|\n/ reference loss")
    ax.grid(True, which="major", alpha=0.3)
    ax.tick_params(labelbottom=False)
    for text in _legend(ax, n).get_texts():
        if "OVER" in text.get_text():
            text.set(color=OVER, fontweight="bold")
    strip.set_ylim(n - 0.5, -0.5)
    strip.set_yticks([(n - 1) / 2], ["exactly equal"], fontsize=8)
    strip.tick_params(axis="y", length=0)
    strip.set_xlabel("step")
    _plain_numbers(strip.xaxis)
    strip.grid(True, axis="x", alpha=0.3)


def _prediction_panel(ax, ref, others, atol):
    diffs = [max_prediction_difference(ref, r) for r in others.values()]
    lo, hi = _log_limits(diffs, atol)
    # Room on the right for the text written after each bar.
    right = 10.0 ** (math.log10(hi) + 0.4 * (math.log10(hi) - math.log10(lo)))
    ax.set_xscale("log")
    ax.set_xlim(lo, right)
    rows = np.arange(len(diffs))
    for y, diff in zip(rows, diffs):
        over = not within(diff, atol)
        if diff > 0:  # a bar from the axis' left edge: log bars cannot start at 0
            ax.barh(y, diff - lo, left=lo, height=0.6, alpha=0.85,
                    color=OVER if over else NO_TOL if atol is None else WITHIN)
        text_color = OVER if over else "black" if atol is None and diff else "darkgreen"
        ax.text(max(diff, lo) * 1.15, y, margin_text(diff, atol), va="center", ha="left", fontsize=8.5,
                color=text_color, fontweight="bold", bbox=LABEL_BOX, zorder=4, gid="margin")
    _tolerance_line(ax, atol, "atol", vertical=True)
    ax.set_yticks(rows, list(others), fontsize=8 if len(diffs) <= FLEET else 7)
    ax.set_ylim(len(diffs) - 0.5, -1.1)  # headroom at the top for the atol label
    ax.set_xlabel("max |prediction - reference prediction| over the 4 inputs (log)")
    ax.grid(True, axis="x", which="major", alpha=0.3)


def _width(others):
    """Inches: the axes keep about 7.5 whatever room the run labels (left of the bars) and the
    legends (right, a label and its margin text) take."""
    longest = max(len(label) for label in others)
    return 7.5 + 1.0 + CHAR_INCHES * longest + 0.6 + CHAR_INCHES * (longest + len(": max 1.5e-06: 1,000x inside"))


def plot_runs(path, runs, title, reference=None, atol=None, rtol=None, missing=()):
    """Write the PNG for `runs` ({label: TrainReport}) atomically to path; returns the figure.

    reference: the label in runs the others are compared with, a (label, report) pair for
    one that is not among them, or None (loss curves only). atol bounds the max |prediction
    difference|, rtol the relative loss-history difference; None draws no tolerance.
    missing: a line for each node that has no run to draw (an unusable device, an
    interrupted check), written in red under the figure's title.
    """
    ref_label, ref, others = _split(runs, reference)
    if not others and ref is not None:  # the reference alone: nothing to compare it with
        ref_label, ref, others = None, None, {ref_label: ref}
    if not others:  # no run at all: only the nodes without one
        return _notes_only(path, title, missing)
    colors = _colors(len(others))
    n = len(others)
    # Inches: the log axis grows with its legend (one line per run), the bars with the runs.
    log_axis = max(2.2, 0.15 * n)
    heights = [3.0] if ref is None else [3.0, log_axis + _strip_inches(n) + 0.5, 0.9 + 0.3 * n]
    fig = _figure(figsize=(_width(others), sum(heights) + 0.6), layout="constrained")
    axes = fig.subplots(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0]
    fig.suptitle(title, fontsize=12, fontweight="bold")
    _no_runs(axes[0], missing)
    _loss_panel(axes[0], ref_label, ref, others, colors)
    if ref is not None:
        axes[0].set_title("loss curves", fontsize=10, loc="left")
        _loss_difference_panel(axes[1], ref_label, ref, others, colors, rtol, log_axis)
        axes[1].set_title(f"relative loss difference to {ref_label}, per sampled step (log)",
                          fontsize=10, loc="left")
        _prediction_panel(axes[2], ref, others, atol)
        axes[2].set_title(f"final predictions: max difference to {ref_label} (log)", fontsize=10, loc="left")
    return _save(fig, path)


def _figure(**kwargs):
    """A new figure on matplotlib's Agg backend (no display needed); matplotlib is optional and
    imported only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure(**kwargs)


def _save(fig, path):
    """Write the figure as a PNG atomically (xor_gpu.files), then free it; returns it."""
    import matplotlib.pyplot as plt

    try:
        write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    finally:
        plt.close(fig)
    return fig


def _no_runs(ax, missing):
    """Above the loss panel: the nodes whose reports hold no run, so that none goes unseen."""
    if missing:
        ax.text(0, 1.08 + 0.01 * len(missing), "no run: " + "; ".join(missing), transform=ax.transAxes,
                ha="left", va="bottom", fontsize=8, color=OVER, fontweight="bold", wrap=True, gid="no-run")


def _notes_only(path, title, missing):
    fig = _figure(figsize=(7.5, 1.0 + 0.25 * len(missing)), layout="constrained")
    fig.suptitle(title, fontsize=12, fontweight="bold")
    for i, line in enumerate(missing):
        fig.text(0.02, 0.75 - i * 0.25 / (1.0 + 0.25 * len(missing)), f"no run: {line}", color=OVER,
                 fontsize=9, fontweight="bold", gid="no-run")
    return _save(fig, path)


def plot_seeds(path, result):
    """parity --seeds: per seed, each device's max |prediction difference| to the reference
    device (log), against atol. Filled: the seed converged on every device; hollow: on none;
    a red X: the devices disagree. Exact zeros sit on a strip below (a log axis has no 0)."""
    from matplotlib.lines import Line2D

    seeds, devices, ref = [row.seed for row in result.rows], result.devices[1:], result.reference
    atol = result.tolerances.atol
    colors, nonzero = _colors(len(devices)), []
    fig = _figure(figsize=(max(6.4, 2.5 + 0.22 * len(seeds)), 3.6 + _strip_inches(len(devices))),
                     layout="constrained")
    ax, strip = fig.subplots(2, 1, sharex=True, height_ratios=[3.0, _strip_inches(len(devices)) + 0.3])
    for row, (device, color) in enumerate(zip(devices, colors)):
        diffs = np.array([seed.differences[device].max_abs_prediction_diff for seed in result.rows])
        zero = diffs == 0
        x = np.arange(len(seeds)) + 0.5 * (row - (len(devices) - 1) / 2) / max(len(devices), 2)  # side by side
        for kind, marker, face in (("converged_everywhere", "o", color), ("converged_nowhere", "o", "none"),
                                   ("disagree", "X", OVER)):
            pick = np.array([seed.kind == kind for seed in result.rows]) & ~zero
            ax.scatter(x[pick], diffs[pick], marker=marker, facecolors=face, edgecolors=color, s=28, zorder=4)
        strip.plot(x[zero], np.full(zero.sum(), row), linestyle="none", marker="|", color=color, markersize=9)
        nonzero += list(diffs[~zero])
    ax.set_yscale("log")
    ax.set_ylim(*_log_limits(nonzero, atol))
    _tolerance_line(ax, atol, "atol")
    ax.set_ylabel("max |prediction diff|")
    ax.set_title(f"each seed's final predictions: max difference to {ref}", fontsize=10, loc="left")
    handles = [Line2D([], [], linestyle="none", marker="o", color=c, label=d) for d, c in zip(devices, colors)]
    handles += [Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", color="gray",
                       label="converged on no device"),
                Line2D([], [], linestyle="none", marker="X", color=OVER, label="devices disagree")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    strip.set_yticks(range(len(devices)), [f"{d}: exactly 0" for d in devices], fontsize=7)
    strip.set_ylim(-0.5, len(devices) - 0.5)
    strip.set_xticks(np.arange(len(seeds)), [str(s) for s in seeds], fontsize=7 if len(seeds) <= 40 else 5,
                     rotation=0 if len(seeds) <= 40 else 90)
    strip.set_xlabel("seed")
    config = result.config
    fig.suptitle(f"XOR parity over {len(seeds)} seeds, {config['floatx']}, {config['steps']:,} steps",
                 fontsize=12, fontweight="bold")
    return _save(fig, path)
