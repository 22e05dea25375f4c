"""`xor-gpu compare`: reports made elsewhere, held against a reference. Real reports from real
runs, then edited copies of them for every kind of bad input."""
import json
import os

import pytest

from xorlib import one_line_error, run_cli, train_report
from xor_gpu import compare

SHORT = ("--steps", "2000", "--lr", "0.3")  # converges like the seed config (lr x steps = 600)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two honest CPU runs of the same short config from separate processes, and a seed-config run."""
    folder = tmp_path_factory.mktemp("reports")
    a = train_report(folder, *SHORT, name="a.json")
    b = train_report(folder, *SHORT, name="b.json")
    seed = train_report(folder, name="seed.json")
    return folder, a, b, seed


def _write(folder, name, data):
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_honest_reports_from_different_processes_pass_and_are_bitwise_equal(reports, tmp_path):
    folder, *_ = reports
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    proc = run_cli("compare", folder / "a.json", folder / "b.json", "--json", out, "--plot", png, check=0)
    result = json.loads(out.read_text())
    assert result["schema"] == "xor_gpu.compare/1" and result["passed"] is True
    assert result["reference"]["label"].endswith("a.json")
    (row,) = result["rows"]
    assert row["bitwise_equal"] is True and row["max_abs_prediction_diff"] == 0.0 and row["converged"]
    assert "1 runs: 1 bitwise equal to the reference" in proc.stdout and "compare: PASS" in proc.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_live_seed_run_matches_the_committed_reference(reports):
    """The cpu env's live run against the reference made in the pinned image."""
    folder, _, _, seed = reports
    proc = run_cli("compare", folder / "seed.json", "--reference", "builtin", check=0)
    assert "compare: PASS" in proc.stdout
    diff = compare.differences(json.load(open(compare.builtin_reference_path())), seed)
    assert diff["max_abs_prediction_diff"] <= compare.DEFAULT_ATOL
    print(f"live cpu run vs committed reference: {diff}")


def test_one_prediction_moved_by_2e_4_fails_with_exit_5(reports, tmp_path):
    folder, a, _, _ = reports
    moved = json.loads(json.dumps(a))
    moved["predictions"]["0,1"] += 2e-4
    path = _write(tmp_path, "moved.json", moved)
    proc = run_cli("compare", folder / "a.json", path, "--json", tmp_path / "c.json")
    one_line_error(proc, 5, "compare failed: 1 of 1 runs outside tolerance")
    result = json.loads((tmp_path / "c.json").read_text())  # the verdict is still written
    (row,) = result["rows"]
    assert row["passed"] is False and row["bitwise_equal"] is True  # weights untouched, prediction edited
    assert row["max_abs_prediction_diff"] == pytest.approx(2e-4, rel=1e-3)


def test_parity_and_check_reports_are_read_run_by_run(reports, tmp_path):
    folder, a, b, _ = reports
    parity = {"schema": "xor_gpu.parity/1", "runs": {"cpu": a, "cpu-again": b}}
    check = {"schema": "xor_gpu.check/1", "runs": {"cpu": b}}
    result, runs, _ = compare.compare([str(_write(tmp_path, "p.json", parity)), str(_write(tmp_path, "s.json", check))])
    assert [r["label"] for r in result["rows"]] == [f"{tmp_path}/p.json[cpu-again]", f"{tmp_path}/s.json[cpu]"]
    assert all(r["bitwise_equal"] for r in result["rows"])


def _bad_inputs(folder, a, seed):
    nan = json.loads(json.dumps(a))
    nan["predictions"]["1,1"] = float("nan")
    missing = {k: v for k, v in a.items() if k != "predictions"}
    other_config = json.loads(json.dumps(a))
    other_config["config"]["hidden"] = 5
    text = json.dumps(a)
    return {
        "missing file": ([folder / "nope.json", folder / "a.json"], "no such file"),
        "not JSON": ([_write(folder, "x.txt", "hello"), folder / "a.json"], "not JSON"),
        "truncated JSON": ([_write(folder, "t.json", text[: len(text) // 2]), folder / "a.json"], "truncated JSON"),
        "foreign schema": ([_write(folder, "f.json", {"name": "something else"}), folder / "a.json"], "not an xor_gpu report"),
        "unknown schema": ([_write(folder, "u.json", {**a, "schema": "xor_gpu.train/9"}), folder / "a.json"],
                           "unknown schema 'xor_gpu.train/9'"),
        "different configs": ([folder / "a.json", _write(folder, "h.json", other_config)],
                              "reports of different configs: hidden is 3"),
        "seed against short": ([folder / "seed.json", folder / "a.json"], "lr is 0.01 in"),
        "NaN prediction": ([_write(folder, "n.json", nan), folder / "a.json"], "prediction for row 1,1 is nan"),
        "missing predictions": ([_write(folder, "m.json", missing), folder / "a.json"], "predictions missing"),
        "one report, no reference": ([folder / "a.json"], "one run and no reference"),
    }


@pytest.mark.parametrize("case", ["missing file", "not JSON", "truncated JSON", "foreign schema", "unknown schema",
                                  "different configs", "seed against short", "NaN prediction",
                                  "missing predictions", "one report, no reference"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(reports, tmp_path, case):
    folder, a, _, seed = reports
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.json", "seed.json"):
        (bad / name).write_text((folder / name).read_text())
    paths, fragment = _bad_inputs(bad, a, seed)[case]
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("compare", *paths, "--json", out / "c.json", "--plot", out / "c.png")
    one_line_error(proc, 2, fragment)
    assert os.listdir(out) == [] and proc.stdout == ""


def test_a_reference_of_another_config_is_refused(reports, tmp_path):
    folder, *_ = reports
    proc = run_cli("compare", folder / "a.json", "--reference", "builtin")
    one_line_error(proc, 2, "lr is 0.01 in builtin but 0.3 in")


def test_the_committed_reference_is_the_seed_config_made_in_the_image():
    import numpy as np

    from xor_gpu.config import TrainConfig
    from xor_gpu.train import weights_digest

    ref = compare.load(compare.builtin_reference_path())
    assert ref["schema"] == "xor_gpu.train/1" and ref["converged"] is True
    seed = TrainConfig().to_dict()  # float32, 3 hidden, lr 0.01, 60,000 steps, seed 1234
    assert {f: ref["config"][f] for f in compare.CONFIG_FIELDS} == {f: seed[f] for f in compare.CONFIG_FIELDS}
    assert ref["device"]["active"] == "cpu" and ref["versions"]["theano"] == "1.0.5"
    assert ref["origin"]["package"]["kind"] == "image" and ref["origin"]["package"]["name"] == "xor-gpu:cpu"
    weights = [np.asarray(ref["final_weights"][k], dtype=np.float32) for k in ("W1", "W2")]
    assert weights_digest(weights) == ref["weights_sha256"]
    assert len(ref["loss_history"]["values"]) == 500
