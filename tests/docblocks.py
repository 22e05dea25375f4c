"""The shell blocks of the documents, for the tests that run them as written.

Every ```sh / ```bash / ```console block of README.md, docs/*.md and benchmarks/README.md
carries a marker on the line directly above its fence, saying which tox env's tests run it
verbatim, or why none can here:

    <!-- doc-test: ENV -->             ENV: cpu, opencl, gpu, docker, bundle, slurm, pytensor, bench, arm64
    <!-- doc-test: needs-gpu -->       needs an NVIDIA GPU
    <!-- doc-test: needs-cluster -->   needs a cluster

Sybil's Markdown lexer finds the fenced blocks (nested and indented fences, ``` or ~~~,
as CommonMark pairs them). A test runs a block with `run_block`, parametrized with the
block as its id (`README.md:20`): tests/test_docs.py checks that the env named by each
marker collects a test with that id.
"""
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys

from sybil import Document
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

REPO = pathlib.Path(__file__).resolve().parents[1]
ENVS = ("cpu", "opencl", "gpu", "docker", "bundle", "slurm", "pytensor", "bench", "arm64")
NOT_HERE = ("needs-gpu", "needs-cluster")
LANGUAGES = "sh|bash|shell|console"
MARKER = re.compile(r"^<!--\s*doc-test:\s*(\S+)\s*-->\s*$")


def documents():
    """The documents whose shell blocks must run: README.md, docs/*.md, benchmarks/README.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]


@dataclasses.dataclass(frozen=True)
class DocBlock:
    path: str      # relative to the repository root
    lineno: int    # line of the opening fence, 1-based
    text: str      # the commands (a console block's `$ ` lines without the prompt)
    marker: str    # what the marker line names, "" without one

    def __str__(self):
        return f"{self.path}:{self.lineno}"


def _commands(language, source):
    if language != "console":
        return source
    return "".join(line[2:] + "\n" for line in source.splitlines() if line.startswith("$ "))


def blocks_of(path):
    """Every shell block of one Markdown file, in order."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    for region in FencedCodeBlockLexer(LANGUAGES)(Document(text, str(path))):
        lineno = text.count("\n", 0, region.start) + 1
        above = MARKER.match(lines[lineno - 2]) if lineno >= 2 else None
        found.append(DocBlock(str(pathlib.Path(path).resolve().relative_to(REPO)), lineno,
                              _commands(region.lexemes["language"], str(region.lexemes["source"])),
                              above.group(1) if above else ""))
    return found


def all_shell_blocks():
    return [b for path in documents() for b in blocks_of(path)]


def shell_blocks(env):
    """The blocks marked `<!-- doc-test: ENV -->`."""
    assert env in ENVS + NOT_HERE, f"unknown doc-test env {env!r}"
    return [b for b in all_shell_blocks() if b.marker == env]


def block(env, first_command):
    """The one block of ENV whose first command line starts with FIRST_COMMAND (how a test
    names the block it runs; a renamed or deleted command fails here, loudly)."""
    matches = [b for b in shell_blocks(env) if _first_command(b).startswith(first_command)]
    assert len(matches) == 1, (f"{len(matches)} blocks marked doc-test: {env} start with {first_command!r}: "
                               f"{[str(b) for b in shell_blocks(env)]}")
    return matches[0]


def _first_command(b):
    return next(line for line in b.text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def repo_copy(dest):
    """A fresh clone of this repository at DEST (its commit, so versions and manifests name it)
    with the working tree's changes on top (tracked and new files, nothing ignored): blocks
    that write into the current folder run there, never in the repository."""
    subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(dest)], check=True, capture_output=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
        elif not source.exists():
            (dest / name).unlink(missing_ok=True)  # deleted in the working tree
    return dest


def user_path():
    """PATH without this tox env's bin: a user's shell has no test env on it."""
    ours = str(pathlib.Path(sys.prefix) / "bin")
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != ours)


def run_block(b, cwd, env=None, timeout=1800):
    """Run the block as written with bash (-e: any failing command fails the block; -x: the
    output shows each command), outside this tox env (user_path(), no VIRTUAL_ENV) unless ENV
    says otherwise. Returns the CompletedProcess; the caller asserts."""
    base = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-x", "-c", b.text], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**base, "PATH": user_path(), **(env or {})})


def explain(b, proc):
    """A failure message: which block, its exit status, the end of its output."""
    return (f"{b} exited {proc.returncode}:\n{b.text}\n--- stdout (end) ---\n{proc.stdout[-4000:]}\n"
            f"--- stderr (end) ---\n{proc.stderr[-4000:]}")
