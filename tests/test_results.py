"""The typed result layer against reports written by earlier releases (tests/data/v0.1.0, made
by xor_gpu 0.1.0 with the commands its README lists, and an H200 node's): each loads, writes
back the same JSON (every train report in them byte for byte), renders the same figures and
compares the same. Then the rules the results pin: the convergence margin a report states,
and bad report files."""
import ast
import dataclasses
import json
import pathlib
import sys
import typing

import pytest

from xor_gpu import compare, cuda_libs, devices, files, problem, render, render_compare
from xor_gpu.config import TrainConfig
from xor_gpu.errors import CheckFailed, ConfigError, DeviceError, Interrupted
from xor_gpu import results
from xor_gpu.results.check import CheckSummary
from xor_gpu.results.compile_only import SCHEMA as COMPILE_ONLY_SCHEMA, CompiledGraph, CompileOnly
from xor_gpu.results.doctor import Findings
from xor_gpu.results.parity import Parity
from xor_gpu.results.runs import Difference, Tolerances, TrainRun
from xor_gpu.results.sweep import Sweep
from xor_gpu.results.train_report import SeedsReport, TrainReport

DATA = pathlib.Path(__file__).parent / "data" / "v0.1.0"
H200 = pathlib.Path(__file__).parent / "data" / "h200-2026-12-04"  # written on an NVIDIA H200 node


def _load(name):
    return results.load(DATA / name)


def _tokens(text):
    """What a printed table says, whatever its column spacing."""
    return [line.split() for line in text.strip().splitlines()]


def _printed(name, drop_last=True):
    """What 0.1.0 printed, without its closing PASS line."""
    lines = (DATA / name).read_text().strip().splitlines()
    return "\n".join(lines[:-1] if drop_last else lines)


def _train_reports():
    """(where, report) of every train report the files of earlier releases hold: alone, one
    per seed, and the runs of parity reports and check summaries; and the committed one."""
    found = [("builtin", json.loads(pathlib.Path(compare.builtin_reference_path()).read_text()))]
    for path in sorted([*DATA.glob("*.json"), *H200.glob("*.json")]):
        data = json.loads(path.read_text())
        if data.get("schema") == results.TRAIN_SCHEMA:
            found.append((path.name, data))
        elif data.get("schema") in (results.SEEDS_SCHEMA, results.PARITY_SCHEMA, results.CHECK_SCHEMA):
            found += [(f"{path.name}[{name}]", run) for name, run in data["runs"].items()]
    return found


@pytest.mark.parametrize("where, data", _train_reports(), ids=[where for where, _ in _train_reports()])
def test_every_train_report_loads_and_writes_back_byte_for_byte(where, data):
    report = TrainReport.from_dict(data, where)
    assert json.dumps(report.to_dict(), indent=2) == json.dumps(data, indent=2)
    assert report.converged is data["converged"] and report.device.name == data["device"]["name"]


def test_the_earlier_releases_hold_train_reports_of_every_kind():
    """The round trip above sees 14 reports: 0.1.0's train, seeds, parity and check runs, the
    H200 node's, and the committed reference (cudnn absent from all but the last)."""
    reports = dict(_train_reports())
    assert len(reports) == 14 and sum("cudnn" in r for r in reports.values()) == 1
    assert {r["config"]["engine"] for r in reports.values()} == {"theano", "pytensor-jax"}


def test_a_train_report_loads_and_renders_as_before():
    data = _load("train.json")
    run = TrainRun("train.json", TrainReport.from_dict(data))
    assert run.converged is True and run.report.schema == results.TRAIN_SCHEMA
    assert Difference.between(run.report, run.report) == Difference(0.0, 0.0, True)


def test_a_parity_report_round_trips_and_prints_the_same_figures():
    data = _load("parity.json")
    parity = Parity.from_dict(data)
    assert json.dumps(parity.to_dict()) == json.dumps(data)
    assert parity.passed and parity.reference == "cpu"
    assert _tokens(render.parity(parity)) == _tokens(_printed("parity.txt"))


def test_a_sweep_report_round_trips_and_prints_the_same_figures():
    data = _load("parity-seeds.json")
    sweep = Sweep.from_dict(data)
    assert json.dumps(sweep.to_dict()) == json.dumps(data)
    assert sweep.groups()["converged_nowhere"] == [1, 2]
    assert _tokens(render.sweep(sweep)) == _tokens(_printed("parity-seeds.txt"))


def test_a_seeds_report_round_trips_and_prints_the_same_figures():
    data = _load("train-seeds.json")
    seeds = SeedsReport.from_dict(data)
    assert json.dumps(seeds.to_dict()) == json.dumps(data)
    assert _tokens(render.seeds(seeds)) == _tokens(_printed("train-seeds.txt", False))


# Every report file an earlier release wrote, and the committed references, by the type that
# reads it (compare.json is compare's output, held against this version's in
# test_compare_of_old_reports_is_the_same: no command reads a comparison).
READERS = {results.TRAIN_SCHEMA: TrainReport.from_dict, results.SEEDS_SCHEMA: SeedsReport.from_dict,
           results.PARITY_SCHEMA: Parity.from_dict, results.SWEEP_SCHEMA: Sweep.from_dict,
           results.CHECK_SCHEMA: CheckSummary.from_dict, COMPILE_ONLY_SCHEMA: CompileOnly.from_dict,
           None: Findings.from_dict}  # doctor.json has no schema of its own
FIXTURES = sorted([*DATA.glob("*.json"), *H200.glob("*.json"), *pathlib.Path(compare.builtin_reference_path()).parent
                   .glob("*.json")])


@pytest.mark.parametrize("path", [p for p in FIXTURES if p.name not in ("compare.json", "compare-check.json")],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_report_file_reads_and_writes_back_byte_for_byte(path):
    """As files.write_json writes them: read by their type, written back, the same bytes."""
    text = path.read_text()
    data = json.loads(text)
    value = READERS[data.get("schema")](data)
    assert json.dumps(value.to_dict(), indent=2) + "\n" == text


def test_the_round_trip_sees_every_kind_of_report_file():
    kinds = {json.loads(p.read_text()).get("schema") for p in FIXTURES}
    assert kinds == {*READERS, results.COMPARE_SCHEMA} and len(FIXTURES) == 16


@pytest.mark.parametrize("name, status, exit_status, failed_step, reason", [
    ("check-cpu.json", "passed", 0, None, None),
    ("check-failed.json", "failed", 5, "train", "check failed at train: did NOT converge, final loss 1.00102"),
    ("check-cuda.json", "unusable", 3, "doctor", "device cuda is not usable: device cuda requested but Theano"),
])
def test_a_summary_without_status_gets_it_from_its_exit_status(name, status, exit_status, failed_step, reason):
    data = _load(name)
    assert "status" not in data  # written before the field existed
    summary = CheckSummary.from_dict(data)
    assert (summary.status, summary.exit_status, summary.failed_step) == (status, exit_status, failed_step)
    assert summary.reason == reason or summary.reason.startswith(reason)
    assert summary.node == data["origin"]["host"] and summary.interrupted_by is None
    assert summary.to_dict() == data  # written back as 0.1.0 wrote it


@pytest.mark.parametrize("name, error", [
    ("check-cpu.json", None), ("check-failed.json", CheckFailed), ("check-cuda.json", DeviceError)])
def test_a_summarys_verdict_is_its_error_with_its_exit_status(name, error):
    """How `check` ends: the summary written, its verdict raised (the CLI returns its status)."""
    summary = CheckSummary.from_dict(_load(name))
    if error is None:
        assert summary.verdict() is None and summary.exit_status == 0
        return
    with pytest.raises(error) as raised:
        summary.verdict()
    assert type(raised.value) is error and str(raised.value) == summary.reason
    assert raised.value.exit_status == summary.exit_status


@pytest.mark.parametrize("name, engine", [("check-cuda-theano.json", "theano"),
                                          ("check-cuda-pytensor-jax.json", "pytensor-jax")])
def test_a_gpu_nodes_summary_loads_and_writes_back_as_it_was(name, engine):
    """Real summaries of a CUDA 13 node: passed, and every field written back unchanged
    (the "cuda" record of the NVIDIA libraries kept as the check wrote it)."""
    data = results.load(H200 / name)
    summary = CheckSummary.from_dict(data)
    assert summary.passed and summary.verdict() is None and summary.engine == engine
    assert summary.cuda.driver == "13.0" and summary.device.active == "cuda" and summary.extra == {}
    assert json.dumps(summary.to_dict()) == json.dumps(data)
    assert [run.converged for run in summary.runs.values()] == [True, True]


def test_an_interrupted_summarys_verdict_is_the_signals_exit_status():
    summary = dataclasses.replace(CheckSummary.from_dict(_load("check-cpu.json")), status="interrupted",
                                  exit_status=143, interrupted_by="SIGTERM")
    with pytest.raises(Interrupted) as raised:
        summary.verdict()
    assert raised.value.exit_status == 143 and str(raised.value) == "interrupted by SIGTERM"


@pytest.mark.parametrize("paths, printed", [
    (["train.json", "parity.json"], "compare"),
    (["check-cpu.json", "check-cpu.json"], "compare-check"),
])
def test_compare_of_old_reports_is_the_same(monkeypatch, paths, printed):
    """The same comparison as 0.1.0's (its JSON gains only nodes and status_counts) and the
    same table, then the fleet of nodes."""
    monkeypatch.chdir(DATA)  # the labels are the paths as given
    result = compare.compare(paths)
    written = result.to_dict()
    before = _load(f"{printed}.json")
    assert {k: v for k, v in written.items() if k not in ("nodes", "status_counts")} == before
    assert [n["status"] for n in written["nodes"]] == ["PASS"] * len(paths)
    old = _tokens(_printed(f"{printed}.txt"))
    assert _tokens(render_compare.comparison(result))[:len(old)] == old


def test_the_committed_reference_loads_and_is_bitwise_itself():
    ref = compare.reference_of(compare.BUILTIN)
    assert Difference.between(ref.report, ref.report).bitwise_equal
    result = compare.compare([compare.builtin_reference_path()], compare.BUILTIN)
    assert result.passed and result.rows[0].difference == Difference(0.0, 0.0, True)


def test_the_convergence_rule_in_a_report():
    """A report states its margin, and its ok column applies it at the boundary."""
    data = json.loads(json.dumps(_load("train.json")))
    assert data["convergence_margin"] == problem.CONVERGENCE_MARGIN == 0.25
    data["predictions"] = {"1,0": 0.75, "0,0": 0.2501, "0,1": 0.7499, "1,1": 0.25}
    table = {row[0]: row[-1] for row in _tokens(render.train(TrainReport.from_dict(data)))[1:5]}
    assert table == {"1,0": "yes", "0,0": "NO", "0,1": "NO", "1,1": "yes"}


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(status="exploded"), "unknown check status 'exploded'"),
    (lambda d: d.pop("steps"), "not a complete xor_gpu.check/1 summary"),
    (lambda d: d["runs"]["cpu"].pop("weights_sha256"), "weights_sha256 missing"),
])
def test_a_broken_summary_is_bad_input(tmp_path, edit, fragment):
    data = _load("check-cpu.json")
    edit(data)
    path = tmp_path / "s.json"
    files.write_json(path, data)
    with pytest.raises(ConfigError, match=fragment):
        compare.compare([str(path)], compare.BUILTIN)


def test_tolerances_refuse_what_is_not_a_finite_number():
    for bad in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(ConfigError, match="atol must be a finite number >= 0"):
            Tolerances(bad, 1e-3)
    assert Tolerances(0, 0).admit(Difference(0.0, 0.0, True))
    assert not Tolerances(1e-4, 1e-3).admit(Difference(1.0001e-4, 0.0, False))


# --- every record read by attribute --------------------------------------------------------

PACKAGE = pathlib.Path(results.__file__).resolve().parent.parent


def _records(root, found=None):
    """`root` and every JsonObject class its fields hold, at any depth."""
    found = set() if found is None else found
    if root not in found:
        found.add(root)
        for field in dataclasses.fields(root):
            for kind in (field.type, *typing.get_args(field.type)):
                if isinstance(kind, type) and issubclass(kind, results.JsonObject):
                    _records(kind, found)
    return found


def _keys(records):
    return {results.key(f) for record in records for f in record.json_fields()}


def _json_keys(value):
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _json_keys(v)}
    return {k for v in value for k in _json_keys(v)} if isinstance(value, list) else set()


# doctor's findings, the compile-only report (and its child's answer), the check summary, with
# every record they hold; the modules that define them are the only ones that may read them by key.
RECORDS = set().union(*(_records(r) for r in (Findings, CompileOnly, CompiledGraph, CheckSummary)))
OWNERS = {pathlib.Path(sys.modules[r.__module__].__file__).resolve() for r in RECORDS}


def _distinct_keys():
    """Their JSON keys that no other dict of the package has: not a train report's (a summary
    holds those), a config's, the other reports' (parity, sweep, seeds, compare), a device's
    kind or a NVIDIA library's kind (cuda_libs' own tables)."""
    others = _keys(_records(TrainReport)) | {f.name for f in dataclasses.fields(TrainConfig)} | set(cuda_libs.LABELS)
    others |= {devices.CPU, devices.CUDA, devices.OPENCL}
    for path in DATA.glob("*.json"):
        data = json.loads(path.read_text())
        if data["schema"] in (results.PARITY_SCHEMA, results.SWEEP_SCHEMA, results.SEEDS_SCHEMA, results.COMPARE_SCHEMA):
            others |= _json_keys(data)
    return _keys(RECORDS) - others


def _key_reads(tree, keys):
    """(line, text) of each read of one of `keys` by string: x["key"], x.get("key")."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args:
            key = node.args[0]
        else:
            continue
        if isinstance(key, ast.Constant) and key.value in keys:
            yield node.lineno, ast.unparse(node)


def test_doctor_compile_only_and_check_records_are_read_by_attribute_outside_their_owners():
    keys = _distinct_keys()
    assert {"pygpu_error", "libgpuarray_arch", "failed_step", "launches_recorded", "nvrtc_front"} <= keys
    found = [f"{path.relative_to(PACKAGE)}:{line}: {text}" for path in sorted(PACKAGE.rglob("*.py"))
             if path.resolve() not in OWNERS for line, text in _key_reads(ast.parse(path.read_text()), keys)]
    assert found == []


def test_the_key_read_check_finds_each_way_of_reading():
    code = ('x = findings["pygpu_error"]\n'
            'y = report.get("libgpuarray_arch")\n'
            'summary["failed_step"] = 1\n'  # a write, not a read
            'z = data["steps"]\n')  # a config's key too
    assert [line for line, _ in _key_reads(ast.parse(code), _distinct_keys())] == [1, 2]
