"""What users rely on in .github/workflows/ci.yml and the Slurm examples in bundle/slurm.

The workflow is read with PyYAML and checked against CONTRACT: its jobs, the matrix entries
of each, the commands each entry runs, the reports they upload (also when they fail) and
the compare job that collects them. problems() is also run on copies with one piece of the
contract removed, so a check that cannot fail would show. The Slurm scripts are parsed the
way sbatch reads them and run with a recording stand-in for the bundle launcher.
"""
import copy
import fnmatch
import itertools
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
SLURM = REPO / "bundle" / "slurm"

DEBIAN = "debian:bookworm"
BOOTSTRAP = "scripts/bootstrap"
CHECK = ".venv/bin/tox exec -e {env} -- xor-gpu check --device {device} --out out/{name}"
REPORTS = "fleet/*/summary.json"  # compare's argument: what download-artifact puts in fleet/
COMPARE = (f".venv/bin/tox exec -e cpu -- xor-gpu compare {REPORTS}"
           " --reference builtin --json compare.json --plot compare.png")
GPU_OPTIONS = "--gpus all"  # the container's options: the runner's GPUs passed through
IMAGE_TESTS = "docker compose --profile gpu run --rm -T test-gpu"
# job -> what it must be. container: the image (None: on the runner itself); gpus: options
# the container must have; matrix: entries that must exist (values of the matrix keys);
# runs: commands every entry runs, formatted with the entry; uploads: artifact name ->
# path, formatted likewise, uploaded with `if: always()`.
CONTRACT = {
    # opencl's sweep runs PyTensor's engines, whose env runs Theano's from the cpu env.
    "device": {"container": DEBIAN, "matrix": [{"env": "cpu"}, {"env": "cpu,pytensor,opencl"}],
               "env": {"XOR_GPU_REQUIRE_ENGINES": "1"}, "runs": [BOOTSTRAP, ".venv/bin/tox -e {env}"]},
    "docker": {"env": {"XOR_GPU_REQUIRE_DOCKER": "1"}, "runs": ["tox -e docker"]},
    "slurm": {"container": DEBIAN, "runs": [f"{BOOTSTRAP} --slurm", ".venv/bin/tox -e slurm"]},
    # Debian's container on the self-hosted runner, whatever its own system: bootstrap is Debian 12 only.
    "gpu": {"runs-on": ["self-hosted", "gpu"], "container": DEBIAN, "gpus": GPU_OPTIONS,
            "env": {"XOR_GPU_REQUIRE_GPU": "1"},
            "runs": [BOOTSTRAP, ".venv/bin/tox -e gpu",
                     CHECK.format(env="gpu", device="cuda", name="cuda")],
            "uploads": {"check-cuda": "out/cuda"}},
    # the image's GPU tests, on the runner's own Docker (no docker CLI in a job's container)
    "gpu-image": {"runs-on": ["self-hosted", "gpu"], "container": None, "if": "vars.XOR_GPU_DOCKER_GPU == '1'",
                  "runs": ["scripts/docker-build cuda", IMAGE_TESTS]},
    "check": {"container": DEBIAN,
              "matrix": [{"name": "cpu", "device": "cpu"}, {"name": "opencl", "device": "opencl0:0"}],
              "runs": [BOOTSTRAP, CHECK.replace("{env}", "cpu")],
              "uploads": {"check-{name}": "out/{name}"}},
    "compare": {"container": DEBIAN, "needs": ["check", "gpu"], "if": "always()",
                "runs": [BOOTSTRAP, COMPARE], "uploads": {"compare": "compare.json\ncompare.png"}},
}
REPORT_JOBS = ("gpu", "check")  # their uploads are what compare downloads


# --- reading the workflow ----------------------------------------------------------

def load_workflow():
    try:
        import yaml  # imported here: the bundle's tests collect this file without PyYAML
    except ImportError:
        pytest.fail("PyYAML is not installed: pip install '.[lint]'")
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def entries(job):
    """The job's matrix entries: the product of its axes, then its `include` entries
    (added as entries of their own, as this workflow uses them). [{}] without a matrix."""
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else []
    combos += [dict(e) for e in matrix.get("include") or []]
    return combos or [{}]


def expand(text, entry):
    """Replace ${{ matrix.KEY }} by the entry's value."""
    return re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: str(entry.get(m.group(1), m.group(0))), str(text))


def command_lines(job, entry):
    """Token lists of every command line of the job's `run:` steps, for one matrix entry."""
    lines = []
    for step in job.get("steps") or []:
        if "run" in step:
            script = expand(step["run"], entry).replace("\\\n", " ")
            lines += [shlex.split(line, comments=True) for line in script.splitlines()]
    return lines


def _contains(tokens, want):
    return any(tokens[i:i + len(want)] == want for i in range(len(tokens) - len(want) + 1))


def runs(job, entry, command):
    want = shlex.split(command)
    return any(_contains(line, want) for line in command_lines(job, entry))


def steps_using(job, action):
    return [s for s in job.get("steps") or [] if str(s.get("uses", "")).startswith(action + "@")]


def uploads(job, entry):
    """{artifact name: (path lines, if)} of the job's upload-artifact steps for one entry."""
    found = {}
    for step in steps_using(job, "actions/upload-artifact"):
        with_ = step.get("with") or {}
        found[expand(with_.get("name", ""), entry)] = (
            expand(with_.get("path", ""), entry).split(), str(step.get("if", "")))
    return found


def _as_list(value):
    return [value] if isinstance(value, str) else list(value or [])


def container_image(job):
    """The job's container image (`container: IMAGE` or `container: {image: IMAGE}`); None
    for a job on the runner itself."""
    container = job.get("container")
    return container.get("image") if isinstance(container, dict) else container


def container_options(job):
    container = job.get("container")
    return shlex.split(str(container.get("options", ""))) if isinstance(container, dict) else []


def problems(workflow):
    """What the workflow lacks of CONTRACT, one line each; [] when it has everything."""
    jobs = workflow.get("jobs") or {}
    triggers = workflow.get("on", workflow.get(True)) or {}  # YAML 1.1 reads a bare `on` as True
    found = [f"not run on {t}" for t in ("push", "pull_request") if t not in triggers]
    for name, want in CONTRACT.items():
        if name in jobs:
            found += job_problems(name, jobs[name], want)
        else:
            found.append(f"job {name!r} is missing")
    if "compare" in jobs:
        found += compare_problems(jobs)
    # scripts/bootstrap sets up Debian 12 only: elsewhere (the runners' Ubuntu) it exits 2
    found += [f"{name}: runs {BOOTSTRAP} outside {DEBIAN}" for name, job in jobs.items()
              if container_image(job) != DEBIAN and any(runs(job, e, BOOTSTRAP) for e in entries(job))]
    return found


def job_problems(name, job, want):
    found = []
    if "container" in want and container_image(job) != want["container"]:
        found.append(f"{name}: container is {container_image(job)!r}, not {want['container']!r}")
    if "gpus" in want and not _contains(container_options(job), shlex.split(want["gpus"])):
        found.append(f"{name}: container options {container_options(job)} lack {want['gpus']!r}")
    if "if" in want and job.get("if") != want["if"]:
        found.append(f"{name}: if is {job.get('if')!r}, not {want['if']!r}")
    if "runs-on" in want and not set(want["runs-on"]) <= set(_as_list(job.get("runs-on"))):
        found.append(f"{name}: runs-on {job.get('runs-on')!r} lacks {want['runs-on']}")
    for var, value in (want.get("env") or {}).items():
        if str((job.get("env") or {}).get(var)) != value:
            found.append(f"{name}: env {var} is not {value!r}")
    for need in want.get("needs", []):
        if need not in _as_list(job.get("needs")):
            found.append(f"{name}: needs lacks {need!r}")
    combos = entries(job)
    for w in want.get("matrix") or [{}]:
        entry = next((e for e in combos if w.items() <= e.items()), None)
        if entry is None:
            found.append(f"{name}: no matrix entry {w}")
            continue
        for command in want.get("runs", []):
            if not runs(job, entry, command.format(**w)):
                found.append(f"{name} {w}: does not run {command.format(**w)!r}")
        have = uploads(job, entry)
        for artifact, path in (want.get("uploads") or {}).items():
            artifact, path = artifact.format(**w), path.format(**w).split()
            if artifact not in have:
                found.append(f"{name} {w}: no upload of artifact {artifact!r}")
            elif have[artifact] != (path, "always()"):
                found.append(f"{name} {w}: artifact {artifact!r} is {have[artifact]}, "
                             f"not {path} with if: always()")
    return found


def compare_problems(jobs):
    """Every report uploaded by REPORT_JOBS reaches compare: its download step fetches the
    artifact, and the summary.json inside it matches compare's argument."""
    found = []
    downloads = steps_using(jobs["compare"], "actions/download-artifact")
    if not downloads:
        return ["compare: no actions/download-artifact step"]
    with_ = downloads[0].get("with") or {}
    pattern, folder = with_.get("pattern", "*"), with_.get("path", ".")
    for name in REPORT_JOBS:
        for entry in entries(jobs.get(name) or {}):
            for artifact in uploads(jobs.get(name) or {}, entry):
                if not fnmatch.fnmatchcase(artifact, pattern):
                    found.append(f"compare: download pattern {pattern!r} misses {name}'s artifact {artifact!r}")
                elif not fnmatch.fnmatchcase(f"{folder}/{artifact}/summary.json", REPORTS):
                    found.append(f"compare: {REPORTS} misses {folder}/{artifact}/summary.json")
    return found


@pytest.fixture(scope="module")
def workflow():
    return load_workflow()


def test_workflow_meets_the_contract(workflow):
    assert problems(workflow) == []


def test_report_artifact_names_are_distinct(workflow):
    # upload-artifact refuses a second artifact of the same name in one run
    names = [a for job in REPORT_JOBS for e in entries(workflow["jobs"][job])
             for a in uploads(workflow["jobs"][job], e)]
    assert len(names) == len(set(names)) >= 3, names


# Each mutation removes one thing users rely on from a copy of the workflow; problems()
# must then name it.

def _drop_entry(job, key, value):
    def mutate(w):
        matrix = w["jobs"][job]["strategy"]["matrix"]
        if key in matrix:
            matrix[key].remove(value)
        else:
            matrix["include"] = [e for e in matrix["include"] if e.get(key) != value]
    return mutate


def _step(w, job, action=None, running=None):
    steps = w["jobs"][job]["steps"]
    return next(s for s in steps if (action and str(s.get("uses", "")).startswith(action + "@"))
                or (running and running in s.get("run", "")))


MUTATIONS = {
    **{f"without job {name}": (lambda w, name=name: w["jobs"].pop(name), f"job {name!r} is missing")
       for name in CONTRACT},
    "not run on pull requests": (lambda w: w.get("on", w.get(True)).pop("pull_request"), "not run on pull_request"),
    "device without opencl": (_drop_entry("device", "env", "cpu,pytensor,opencl"),
                              "device: no matrix entry {'env': 'cpu,pytensor,opencl'}"),
    "device without cpu": (_drop_entry("device", "env", "cpu"), "device: no matrix entry {'env': 'cpu'}"),
    "check without opencl0:0": (_drop_entry("check", "device", "opencl0:0"), "check: no matrix entry"),
    "check without cpu": (_drop_entry("check", "device", "cpu"), "check: no matrix entry"),
    "check upload only on success": (lambda w: _step(w, "check", "actions/upload-artifact").pop("if"),
                                     "with if: always()"),
    "gpu upload renamed": (lambda w: _step(w, "gpu", "actions/upload-artifact")["with"].update(name="cuda"),
                           "no upload of artifact 'check-cuda'"),
    "gpu without its check": (lambda w: w["jobs"]["gpu"]["steps"].remove(_step(w, "gpu", running="xor-gpu check")),
                              "gpu {}: does not run '.venv/bin/tox exec -e gpu -- xor-gpu check"),
    "gpu without a GPU label": (lambda w: w["jobs"]["gpu"].update({"runs-on": "self-hosted"}), "gpu: runs-on"),
    "gpu may skip": (lambda w: w["jobs"]["gpu"]["env"].pop("XOR_GPU_REQUIRE_GPU"), "XOR_GPU_REQUIRE_GPU"),
    "gpu on the runner's own system": (lambda w: w["jobs"]["gpu"].pop("container"),
                                       "gpu: runs scripts/bootstrap outside debian:bookworm"),
    "gpu in Debian without the GPU": (lambda w: w["jobs"]["gpu"].update(container=DEBIAN),
                                      "gpu: container options [] lack '--gpus all'"),
    "gpu in another system's container": (lambda w: w["jobs"]["gpu"]["container"].update(image="ubuntu:24.04"),
                                          "gpu: container is 'ubuntu:24.04', not 'debian:bookworm'"),
    "compare on the runner's own system": (lambda w: w["jobs"]["compare"].pop("container"),
                                           "compare: runs scripts/bootstrap outside debian:bookworm"),
    "image tests in a container": (lambda w: w["jobs"]["gpu-image"].update(container=DEBIAN),
                                   "gpu-image: container is 'debian:bookworm', not None"),
    "image tests without the GPU": (lambda w: _step(w, "gpu-image", running="test-gpu").update(
        run="docker compose run --rm -T test"), f"does not run {IMAGE_TESTS!r}"),
    "slurm without Slurm's packages": (lambda w: _step(w, "slurm", running="bootstrap").update(run=BOOTSTRAP),
                                       "slurm {}: does not run 'scripts/bootstrap --slurm'"),
    "docker may skip": (lambda w: w["jobs"]["docker"]["env"].pop("XOR_GPU_REQUIRE_DOCKER"),
                        "XOR_GPU_REQUIRE_DOCKER"),
    "compare not after gpu": (lambda w: w["jobs"]["compare"].update(needs=["check"]), "needs lacks 'gpu'"),
    "compare only when all passed": (lambda w: w["jobs"]["compare"].pop("if"), "compare: if is None"),
    "compare downloads nothing": (lambda w: w["jobs"]["compare"]["steps"].remove(
        _step(w, "compare", "actions/download-artifact")), "no actions/download-artifact"),
    "compare downloads other artifacts": (lambda w: _step(w, "compare", "actions/download-artifact")["with"]
                                          .update(pattern="report-*"), "misses gpu's artifact 'check-cuda'"),
    "compare reads another folder": (lambda w: _step(w, "compare", "actions/download-artifact")["with"]
                                     .update(path="reports"), "misses reports/check-cpu/summary.json"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_problems_sees_what_is_missing(workflow, mutation):
    mutate, expected = MUTATIONS[mutation]
    broken = copy.deepcopy(workflow)
    mutate(broken)
    found = problems(broken)
    assert any(expected in p for p in found), found


# --- Slurm -------------------------------------------------------------------------

def sbatch_options(path):
    """{option: value} of the #SBATCH lines sbatch reads: those before the first command."""
    options = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        m = re.match(r"#SBATCH\s+--([a-z-]+)(?:=(\S+))?\s*$", line)
        if m:
            options[m.group(1)] = m.group(2)
        else:
            assert not line.startswith("#SBATCH"), f"{path.name}: sbatch cannot read {line!r}"
    return options


@pytest.mark.parametrize("path", sorted(SLURM.glob("*.sbatch")), ids=lambda p: p.name)
def test_every_sbatch_directive_is_read(path):
    # sbatch stops at the first command: a #SBATCH line after it is silently ignored
    written = sum(line.startswith("#SBATCH") for line in path.read_text(encoding="utf-8").splitlines())
    assert len(sbatch_options(path)) == written


def test_the_array_runs_one_gpu_check_per_task():
    options = sbatch_options(SLURM / "xor_gpu_check_array.sbatch")
    assert options["array"] == "0-3" and options["gres"] == "gpu:1"
    assert "%A_%a" in options["output"], "one log per task"


def test_compare_needs_no_gpu_and_headers_show_the_submission():
    assert "gres" not in sbatch_options(SLURM / "xor_gpu_compare.sbatch")
    for name in ("xor_gpu_check_array.sbatch", "xor_gpu_compare.sbatch"):
        text = (SLURM / name).read_text(encoding="utf-8")
        assert "#   jid=$(sbatch --parsable xor_gpu_check_array.sbatch)\n" in text, name
        assert ("#   sbatch --dependency=afterany:$jid --export=ALL,CHECK_JOB=$jid xor_gpu_compare.sbatch\n"
                in text), name


@pytest.fixture
def launcher(tmp_path):
    """A stand-in for xor_gpu-bundle-run.sh that records its arguments, one per line."""
    record = tmp_path / "args"
    runner = tmp_path / "runner.sh"
    runner.write_text(f'printf "%s\\n" "$@" > "{record}"\n')

    def run(script, **env):
        env = {"PATH": os.environ["PATH"], "XOR_GPU_BUNDLE_RUNNER": str(runner),
               "SLURM_SUBMIT_DIR": str(tmp_path), **env}
        proc = subprocess.run(["bash", str(SLURM / script), "--cache", "/scratch/c"], env=env,
                              capture_output=True, text=True, timeout=60)
        args = record.read_text().splitlines() if record.exists() else None
        return proc, args
    return run


def test_array_resources_start_on_a_small_node():
    options = sbatch_options(SLURM / "xor_gpu_check_array.sbatch")
    assert int(options["cpus-per-task"]) <= 2 and options["mem"] == "4G", options
    assert "sbatch --cpus-per-task=4" in (SLURM / "xor_gpu_check_array.sbatch").read_text(encoding="utf-8")


TASK = {"SLURM_ARRAY_JOB_ID": "812", "SLURM_ARRAY_TASK_ID": "2", "SLURMD_NODENAME": "gpu07"}


def test_array_task_checks_cuda_with_theano_into_its_own_folder(launcher, tmp_path):
    proc, args = launcher("xor_gpu_check_array.sbatch", **TASK)
    assert proc.returncode == 0, proc.stderr
    assert args == ["--cache", "/scratch/c", "check", "--device", "cuda", "--engine", "theano",
                    "--out", f"{tmp_path}/results/812_2-gpu07"]


@pytest.mark.parametrize("params, device, engine", [
    ({"XOR_GPU_DEVICE": "opencl0:0"}, "opencl0:0", "theano"),
    ({"XOR_GPU_DEVICE": "cuda1", "XOR_GPU_ENGINE": "pytensor-jax"}, "cuda1", "pytensor-jax"),
    ({"XOR_GPU_DEVICE": "cpu,opencl0:0,cuda,opencl1:0"}, "cuda", "theano"),  # task 2 takes the third
    ({"XOR_GPU_ENGINE": "pytensor"}, "cuda", "pytensor"),
])
def test_array_task_takes_its_device_and_engine(launcher, tmp_path, params, device, engine):
    proc, args = launcher("xor_gpu_check_array.sbatch", **TASK, **params)
    assert proc.returncode == 0, proc.stderr
    assert args[2:7] == ["check", "--device", device, "--engine", engine], args


@pytest.fixture
def validating(tmp_path):
    """A stand-in for xor_gpu-bundle-run.sh that runs the real `xor-gpu` (this env's) on the
    arguments after the launcher's own (--cache DIR)."""
    runner = tmp_path / "xor-gpu.sh"
    runner.write_text(f'shift 2\nexec "{sys.executable}" -m xor_gpu "$@"\n')
    return runner


@pytest.mark.parametrize("params, message", [
    ({"XOR_GPU_DEVICE": "gpu"}, "xor-gpu: error: unknown device 'gpu'"),
    ({"XOR_GPU_DEVICE": "opencl0"}, "xor-gpu: error: unknown device 'opencl0'"),
    ({"XOR_GPU_DEVICE": "cuda,cuda,,cuda"}, "xor-gpu: error: unknown device ''"),
    ({"XOR_GPU_ENGINE": "torch"}, "xor-gpu: error: unknown engine 'torch'"),
    ({"XOR_GPU_ENGINE": "pytensor-numba"}, "xor-gpu: error: engine pytensor-numba cannot run on cuda"),
    ({"XOR_GPU_DEVICE": "cpu,cuda"}, "xor_gpu_check: error: XOR_GPU_DEVICE=cpu,cuda names 2 devices: none for task 2"),
])
def test_array_refuses_what_xor_gpu_refuses_with_one_line(launcher, validating, tmp_path, params, message):
    """The array task asks xor-gpu, which knows its devices and engines: one line, exit 2, and
    no folder made for the task's results."""
    proc, args = launcher("xor_gpu_check_array.sbatch", **TASK, **params, XOR_GPU_BUNDLE_RUNNER=str(validating))
    assert proc.returncode == 2 and args is None, (proc.returncode, proc.stderr)
    assert proc.stderr.splitlines()[-1].startswith(message), proc.stderr
    assert not (tmp_path / "results").exists(), "something was written"


def test_compare_gets_every_task_of_its_array_job(launcher, tmp_path):
    """Every task's folder, also one without a summary (a task killed before it wrote one)."""
    for folder in ("812_0-gpu01", "812_1-gpu02", "812_3-gpu04", "8120_0-gpu01", "813_0-gpu01"):
        (tmp_path / "results" / folder).mkdir(parents=True)
        if folder != "812_1-gpu02":
            (tmp_path / "results" / folder / "summary.json").write_text("{}")
    (tmp_path / "results" / "812_2-notes.txt").write_text("")  # a file, not a task's folder
    proc, args = launcher("xor_gpu_compare.sbatch", CHECK_JOB="812")
    assert proc.returncode == 0, proc.stderr
    results = tmp_path / "results"
    assert args == ["--cache", "/scratch/c", "compare",
                    *(f"{results}/812_{t}" for t in ("0-gpu01", "1-gpu02", "3-gpu04")),
                    "--reference", "builtin",
                    "--json", f"{results}/812-compare.json", "--plot", f"{results}/812-compare.png"]


@pytest.mark.parametrize("env", [{}, {"CHECK_JOB": "999"}], ids=["no CHECK_JOB", "no reports"])
def test_compare_refuses_without_reports(launcher, env):
    proc, args = launcher("xor_gpu_compare.sbatch", **env)
    assert proc.returncode != 0 and args is None
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
