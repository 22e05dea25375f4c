"""The typed result layer against reports written by earlier releases (tests/data/v0.1.0, made
by xor_gpu 0.1.0 with the commands its README lists, and an H200 node's): each loads, writes
back the same JSON (every train report in them byte for byte), renders the same figures and
compares the same. Then the rules the results pin: the convergence margin a report states,
and bad report files."""
import dataclasses
import json
import pathlib

import pytest

from xor_gpu import compare, files, problem, render
from xor_gpu.errors import CheckFailed, ConfigError, DeviceError, Interrupted
from xor_gpu.results import schemas
from xor_gpu.results.check import CheckSummary
from xor_gpu.results.parity import Parity
from xor_gpu.results.runs import Difference, Tolerances, TrainRun
from xor_gpu.results.sweep import Sweep
from xor_gpu.results.train_report import SeedsReport, TrainReport

DATA = pathlib.Path(__file__).parent / "data" / "v0.1.0"
H200 = pathlib.Path(__file__).parent / "data" / "h200-2026-12-04"  # written on an NVIDIA H200 node


def _load(name):
    return schemas.load(DATA / name)


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
        if data.get("schema") == schemas.TRAIN_SCHEMA:
            found.append((path.name, data))
        elif data.get("schema") in (schemas.SEEDS_SCHEMA, schemas.PARITY_SCHEMA, schemas.CHECK_SCHEMA):
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
    assert run.converged is True and run.report.schema == schemas.TRAIN_SCHEMA
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
    written = summary.to_dict()
    assert {k: written[k] for k in data} == data  # every field of 0.1.0 written back as it was
    assert written["status"] == status


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
    data = schemas.load(H200 / name)
    summary = CheckSummary.from_dict(data)
    assert summary.passed and summary.verdict() is None and summary.config["engine"] == engine
    assert summary.extra["cuda"]["driver"] == "13.0" and summary.device["active"] == "cuda"
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
    assert _tokens(render.comparison(result))[:len(old)] == old


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
