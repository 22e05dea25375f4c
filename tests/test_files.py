"""Every file the package leaves is written atomically (xor_gpu.files): a reader never sees
half of one, and a failed write leaves the previous file and no temporary one."""
import json
import os
import subprocess
import sys

import pytest

from xor_gpu import files

WRITER = """
import sys
from xor_gpu import files
path, rounds = sys.argv[1], int(sys.argv[2])
for i in range(rounds):
    files.write_json(path, {"schema": "big", "round": i, "values": [i % 7] * 200_000})
"""


def test_a_reader_never_sees_a_partial_report(tmp_path):
    """A writer in another process rewrites a 1 MB report while this one reads it: every read
    is a whole report (a temporary file renamed over the old one), never a torn one."""
    path = tmp_path / "report.json"
    files.write_json(path, {"schema": "big", "round": -1, "values": []})
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "60"])
    reads = set()
    while writer.poll() is None:
        data = json.loads(path.read_text())  # a torn file raises here
        assert len(data["values"]) in (0, 200_000) and set(data["values"]) <= {data["round"] % 7}
        reads.add(data["round"])
    assert writer.returncode == 0 and len(reads) > 2, reads  # it read while the writer wrote
    assert json.loads(path.read_text())["round"] == 59
    assert os.listdir(tmp_path) == ["report.json"]  # no temporary file left behind


def test_a_failed_write_leaves_the_previous_report(tmp_path):
    path = tmp_path / "report.json"
    files.write_json(path, {"schema": "x", "n": 1})
    with pytest.raises(ValueError):
        files.write_json(path, {"schema": "x", "n": float("nan")})  # not JSON: refused mid-write
    assert json.loads(path.read_text()) == {"schema": "x", "n": 1} and os.listdir(tmp_path) == ["report.json"]


def test_a_figure_written_as_bytes_fails_as_a_whole(tmp_path):
    """plots write PNGs this way: a drawing that fails halfway leaves the previous figure."""
    path = tmp_path / "plot.png"
    files.write_atomically(path, lambda f: f.write(b"\x89PNG first"), binary=True)

    def half(f):
        f.write(b"\x89PNG sec")
        raise RuntimeError("the drawing failed")

    with pytest.raises(RuntimeError):
        files.write_atomically(path, half, binary=True)
    assert path.read_bytes() == b"\x89PNG first" and os.listdir(tmp_path) == ["plot.png"]
    files.write_text(path.with_suffix(".log"), "é\n")  # text is UTF-8, whatever the locale
    assert path.with_suffix(".log").read_bytes() == "é\n".encode()
