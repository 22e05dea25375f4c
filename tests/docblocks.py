"""The shell blocks of the documents that a marker line assigns to a test env:

    <!-- doc-test: ENV -->
    ```sh
    ...
    ```

shell_blocks(env) lists them (DocBlock: path, line of the fence, the commands);
run_block runs one as written.
"""
import dataclasses
import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!--\s*doc-test:\s*(\S+)\s*-->\s*$")
FENCE = re.compile(r"^```(sh|bash|shell|console)\s*$")


def documents():
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclasses.dataclass(frozen=True)
class DocBlock:
    path: str      # relative to the repository root
    lineno: int    # line of the opening fence, 1-based
    text: str      # the commands
    marker: str    # what the marker line names, "" without one

    def __str__(self):
        return f"{self.path}:{self.lineno}"


def blocks_of(path):
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            above = MARKER.match(lines[i - 1]) if i else None
            found.append(DocBlock(str(pathlib.Path(path).relative_to(REPO)), i + 1,
                                  "".join(line + "\n" for line in lines[i + 1:end]), above.group(1) if above else ""))
            i = end
        i += 1
    return found


def shell_blocks(env):
    """The blocks marked `<!-- doc-test: ENV -->`."""
    return [b for path in documents() for b in blocks_of(path) if b.marker == env]


def user_path():
    """PATH without this tox env's bin: a user's shell has no test env on it."""
    ours = str(pathlib.Path(sys.prefix) / "bin")
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != ours)


def run_block(b, cwd, env=None, timeout=1800):
    """Run the block as written with bash -e -x, outside this tox env."""
    base = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-x", "-c", b.text], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**base, "PATH": user_path(), **(env or {})})


def explain(b, proc):
    return (f"{b} exited {proc.returncode}:\n{b.text}\n--- stdout (end) ---\n{proc.stdout[-4000:]}\n"
            f"--- stderr (end) ---\n{proc.stderr[-4000:]}")
