"""How every command ends: print its table (xor_gpu.render), write its report, draw its plot,
and raise its verdict's error, whose exit status the CLI returns. train, parity, the seed
sweep and compare end through finish(); `check` writes its summary the same way while SIGTERM
and SIGINT wait, then raises its verdict."""
from xor_gpu import files, render
from xor_gpu.errors import EXIT_OK

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
    """The result's JSON report, written atomically."""
    if json_path:
        files.write_json(json_path, result.to_dict())
