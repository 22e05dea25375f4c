"""`docker compose run` for real: the train service trains the seed config and writes its
report and plot to the bind-mounted out folder, arguments pass through, runs are warm
(nothing compiled: the compile cache baked into the image reaches the named volume). The
test service (tox inside the image) runs in test_docs_docker.py, as the README writes it.

Warm is counted two ways, both must be 0: the report's new_compiled_modules (module folders
created in the compiledir while the functions compiled, counted inside the process, so it
also sees Theano's "unversioned" modules that are deleted at exit), and the module folders
in the volume's compiledir before and after the run (what persisted).
"""
import time

import pytest

pytestmark = pytest.mark.docker

TARGETS = {"1,0": 1, "0,0": 0, "0,1": 1, "1,1": 0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def timed_run(compose, service, *args, **kw):
    start = time.perf_counter()
    proc = compose.run(service, *args, **kw)
    return proc, time.perf_counter() - start


@pytest.fixture(scope="module")
def first_run(compose):
    """`docker compose run --rm train` once, in the fresh project (its volume is created and
    filled from the image at this first mount)."""
    for name in ("report.json", "loss.png"):
        (compose.out / name).unlink(missing_ok=True)
    proc, wall = timed_run(compose, "train")
    print(f"first docker compose run train: {wall:.1f} s")
    return proc, compose.report()


def test_train_converges_and_writes_report_and_plot(compose, first_run):
    proc, report = first_run
    assert "converged       yes" in proc.stdout, proc.stdout
    assert report["converged"] is True
    assert report["device"]["requested"] == report["device"]["active"] == "cpu"
    assert report["config"]["steps"] == 60000  # the seed config: the CLI's defaults
    for row, target in TARGETS.items():
        p = report["predictions"][row]
        assert (p > 0.5) == bool(target), f"input {row}: prediction {p} on the wrong side of 0.5"
        assert abs(p - target) <= 0.5 - report["convergence_margin"]
    png = (compose.out / "loss.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_first_run_in_a_fresh_volume_is_already_warm(first_run):
    """The image's baked compile cache is what the new named volume starts with."""
    _, report = first_run
    assert report["new_compiled_modules"] == 0, f"compiled {report['new_compiled_modules']} modules"


def test_second_run_in_a_fresh_container_compiles_nothing(compose, first_run):
    before = compose.modules_in_volume()
    (compose.out / "report.json").unlink()
    proc, wall = timed_run(compose, "train")
    report = compose.report()
    after = compose.modules_in_volume()
    print(f"second docker compose run train: {wall:.1f} s, compile {report['compile_seconds']:.2f} s")
    assert report["converged"] is True
    assert report["new_compiled_modules"] == 0, proc.stdout
    assert after == before, f"the volume's compiledir went from {before} to {after} modules"


def test_arguments_pass_through_to_xor_gpu_train(compose, first_run):
    proc = compose.run("train", "--steps", "1000", "--device", "opencl0:0")
    report = compose.report()
    assert report["config"]["steps"] == 1000
    assert report["device"]["requested"] == report["device"]["active"] == "opencl0:0"
    assert any(op.startswith("Gpu") for op in report["ops"]), report["ops"]
    assert "pthread" in report["device"]["name"] or "cpu" in report["device"]["name"].lower(), proc.stdout


@pytest.mark.parametrize("device", ["cpu", "opencl0:0"])
def test_check_service_proves_the_device_in_the_image(compose, first_run, device):
    """`docker compose run --rm check`: the whole proof inside the image; its summary is what
    `xor-gpu compare` reads from a fleet, and the image's CPU run matches the committed
    reference (made in this image) bit for bit."""
    proc, wall = timed_run(compose, "check", "--device", device, timeout=1200)
    summary = compose.report("check/summary.json")
    print(f"docker compose run check --device {device}: {wall:.0f} s")
    assert summary["passed"] is True, proc.stderr[-3000:]
    assert summary["origin"]["package"]["kind"] == "image"
    reference = next(s for s in summary["steps"] if s["name"] == "reference")
    assert reference["status"] == "passed" and reference["differences"]["cpu"]["bitwise_equal"] is True
    for run in summary["runs"].values():
        assert run["origin"]["package"]["name"] == "xor-gpu:cpu"


def test_bad_arguments_exit_2_with_one_line(compose):
    proc = compose.run("train", "--steps", "0", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("xor-gpu: error:"), proc.stderr


def test_container_runs_as_the_image_user_and_without_network(compose):
    out = compose("run", "--rm", "-T", "--entrypoint", "sh", "train", "-c", "id -u; ls /sys/class/net").stdout
    assert out.split() == ["1000", "lo"], f"expected uid 1000 and only the loopback interface: {out}"

