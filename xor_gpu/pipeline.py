"""The path parity, the seed sweep and compare share: collect the runs (each in its own
process), build the result (xor_gpu.results: differences and verdict), then finish: print
its table (xor_gpu.render), write its report, draw its plot, and raise its verdict's error,
whose exit status the CLI returns. `check` ends the same way (write, then the verdict), its
summary written while SIGTERM and SIGINT wait."""
import sys

from xor_gpu import child, engines, files, render
from xor_gpu.errors import EXIT_OK
from xor_gpu.results.parity import Failure


def collect(config, runs, seeds=None):
    """Train config once per run ({label: (engine, device)}), each in its own child process with
    its engine's Python. Returns ({label: report}, {label: Failure}); a failed run does not stop
    the others."""
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
            failures[label] = Failure(run.exit_status, run.error)
    return reports, failures


QUIET = ""  # finish(passed=QUIET): no closing line (train's table is its own ending)


def finish(result, text, json_path=None, draw=None, passed=None):
    """Print text (None: nothing to show), write the result's JSON, draw (a function, or None),
    then the verdict: its error is raised, else the `passed` line is printed (None: the
    result's "NAME: PASS")."""
    if text:
        print(text)
    write(result, json_path)
    if draw:
        draw()
    result.verdict()
    if passed != QUIET:
        print(passed or render.passed(type(result).__name__.lower()))
    return EXIT_OK


def write(result, json_path):
    """The result's JSON report, written atomically; `check` writes its summary this way while
    signals wait, then raises its verdict as finish() does."""
    if json_path:
        files.write_json(json_path, result.to_dict())
