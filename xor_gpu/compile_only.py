"""`xor-gpu doctor --device cuda --compile-only [--arch sm_XY] [--driver VERSION]`: the CUDA
path up to the first kernel launch, on a machine without a GPU (a login node, CI), for the
GPU and driver of the nodes the kernels are for.

The NVRTC and cuBLAS are those cuda_libs' rule chooses for such a node: the driver given
(--driver: its CUDA version, or its own version), else this machine's, else unknown (then
only the architecture is checked). A child process runs Theano on a cuda context with
xor_gpu's stand-in driver (reporting that architecture and driver) and cuBLAS
(xor_gpu/cuda_standin) first on LD_LIBRARY_PATH, then the same folder of links a run gets,
whose libnvrtc.so is xor_gpu's NVRTC front before the REAL NVRTC: it compiles the seed graph
and makes one training call, so that libgpuarray writes every kernel's source and compiles
it with NVRTC through its own code path and options, which the front records (and, for
compute capability 10 and more, gives in full, as on a real node). The stand-in records each
module's PTX and kernel names; this process then assembles each PTX with a ptxas at least as
new as that NVRTC, for the architecture (registers, spills), checks every cuBLAS name
libgpuarray looks up in the real cuBLAS, and reports. Nothing runs on a GPU and no number is
checked: the report says so ("executed": false) and compare/check refuse it as evidence.
"""
import ctypes
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from xor_gpu import backend, child, cuda_arch, cuda_libs, cuda_search, cuda_standin, devices, files, render
from xor_gpu.config import TrainConfig
from xor_gpu.model import XorModel
from xor_gpu import ptxas as ptxas_tool
from xor_gpu.errors import EXIT_OK, CheckFailed, ConfigError, DeviceError, XorGpuError
from xor_gpu.results.train_report import NvrtcArch

SCHEMA = "xor_gpu.compile-only/1"
DEFAULT_ARCH = "sm_90"
NOT_EXECUTED = ("Nothing was executed: kernels were compiled and assembled only, no kernel ran on a GPU "
                "and no number was checked. This report is not evidence that training works.")
# libgpuarray 0.7.6 writes "compute_" + major + minor into a buffer of len("compute_") + 3 bytes
# and checks snprintf's result with > instead of >=: compute capability 10.0 silently becomes
# "compute_10" (and 12.0 "compute_12"). xor_gpu's NVRTC front gives the whole name; this says
# what happened where it did not.
TRUNCATION = ("libgpuarray 0.7.6 cuts the architecture name for compute capability {cc} to '{bin_id}' "
              "(its buffer holds 10 characters), so NVRTC is not asked for {arch}")
UNKNOWN_DRIVER = "unknown (no --driver, no driver here): NVRTC and cuBLAS checked for the architecture only"
CHILD_TIMEOUT = 900
LOG_LINES = 6


def check_args(device, arch, driver=None):
    """(arch, (major, minor), the target driver's CUDA version or None, where that came from)
    for the command line's --device, --arch and --driver; ConfigError. Without --arch: this
    machine's first GPU, else sm_90; without --driver: this machine's driver, else unknown."""
    if device is not None and not devices.device(device).is_cuda:
        raise ConfigError(f"--compile-only compiles CUDA kernels: it needs --device cuda, not {device}")
    cc = cuda_arch.parse_arch(arch) if arch is not None else None
    cuda = cuda_arch.parse_driver(driver) if driver is not None else None
    here = cuda_search.find_driver()[0] if cc is None or driver is None else None
    if cc is None:
        cc = here.gpus[0] if here and here.gpus else cuda_arch.parse_arch(DEFAULT_ARCH)
    if driver is not None:
        return cuda_arch.sm(cc), cc, cuda, f"--driver {driver}"
    if here:
        return cuda_arch.sm(cc), cc, tuple(here.version), f"this machine's ({here.path})"
    return cuda_arch.sm(cc), cc, None, UNKNOWN_DRIVER


# --- the run folder and the child -----------------------------------------------------------

def _run_folder(standins, root):
    """A folder of links for the child: the stand-ins as libcuda.so and libcublas.so."""
    libs = os.path.join(root, "libs")
    os.makedirs(libs)
    for name, path in standins.items():
        os.symlink(path, os.path.join(libs, name))
    for sub in ("record", "kernel-cache"):
        os.makedirs(os.path.join(root, sub))
    return libs


def _child_env(folders, root, cc, cuda):
    """The child's environment: `folders` first on LD_LIBRARY_PATH, the stand-in driver told the
    architecture and the driver's CUDA version (`cuda`, (major, minor))."""
    env = dict(os.environ)
    paths = [*folders, *(p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p)]
    # libgpuarray's kernel disk cache: an empty one of this run's, so that NVRTC compiles every
    # kernel now, and the stand-in's module images never reach the cache a real run reads.
    cache = f"gpuarray.cache_path={os.path.join(root, 'kernel-cache')}"
    flags = ",".join(filter(None, (env.get("THEANO_FLAGS"), cache)))
    env.update(LD_LIBRARY_PATH=os.pathsep.join(paths), THEANO_FLAGS=flags,
               XOR_GPU_STANDIN_CC=f"{cc[0]}.{cc[1]}", XOR_GPU_STANDIN_RECORD=os.path.join(root, "record"),
               XOR_GPU_STANDIN_DRIVER=str(cuda[0] * 1000 + cuda[1] * 10))
    return env


def child_main(out_path):
    """In the child: compile the seed graph for cuda on the stand-in and make one training
    call; write the device's name and the graph's ops, or the error, to `out_path`."""
    cuda_standin.allowed = True
    result = {"ok": False}
    try:
        config = TrainConfig(device="cuda", steps=1).resolved()
        theano = backend.import_theano(config.device, config.floatx)
        context = backend.active_context(theano)
        result["device"] = context.devname
        model = XorModel(theano, config)
        step = model.steps_function(1)
        result["ops"] = backend.verify_graph(step, config.device)
        result["cudnn"] = backend.cudnn_of(theano, result["ops"])
        step()
        model.predict()
        result["ok"] = True
    except Exception as exc:  # noqa: BLE001 - the error is the finding, written for the parent
        result["error"] = f"{type(exc).__name__}: {exc}"
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return EXIT_OK if result["ok"] else XorGpuError.exit_status


def _run_child(env):
    with child.Process() as proc:
        out = proc.path("child.json")
        try:
            returncode, stderr = proc.start([sys.executable, "-m", "xor_gpu.compile_only", out], env).wait(CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"the compile-only child did not finish in {CHILD_TIMEOUT} s") from None
        return child.read_json(out) or {"ok": False, "error": child.died(returncode, stderr, "the compile-only child")}


# --- what the stand-in recorded ----------------------------------------------------------------

def read_record(folder):
    """{"kernels": [{name, module, ptx_bytes, ptx_sha256, target}], "launches": {name: n}, "cublas_calls": [...],
    "missing": [...], "nvrtc_options": [...], "nvrtc_arch": NvrtcArch or None, "nvrtc_logs": [...]}
    from calls.tsv (the stand-ins' and the NVRTC front's) and the PTX files."""
    modules, kernels, launches, calls, missing, options, fixes = {}, [], {}, [], [], [], []
    try:
        with open(os.path.join(folder, "calls.tsv"), encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t") for line in f]
    except OSError:
        rows = []
    for row in rows:
        kind, rest = row[0], row[1:]
        if kind == "module":
            modules[rest[0]] = int(rest[1])
        elif kind == "function":
            ptx = _read(os.path.join(folder, f"ptx-{rest[0]}.ptx"))
            target = re.search(r"^\.target\s+(\S+)", ptx, re.M)
            kernels.append({"name": rest[1], "module": int(rest[0]), "ptx_bytes": modules.get(rest[0]),
                            "ptx_sha256": hashlib.sha256(ptx.encode()).hexdigest(),
                            "target": target.group(1).rstrip(",") if target else None})
        elif kind == "launch":
            launches[rest[0]] = launches.get(rest[0], 0) + 1
        elif kind == "cublas":
            calls.append(rest[0])
        elif kind == "missing":
            missing.append(rest[1])
        elif kind == "nvrtc" and rest[0] not in options:
            options.append(rest[0])
        elif kind == "arch":
            fixes.append(tuple(rest[:2]))
    failures = sorted(glob.glob(os.path.join(folder, "nvrtc-failure-*.log")),
                      key=lambda p: int(re.findall(r"\d+", os.path.basename(p))[0]))
    return {"kernels": kernels, "launches": launches, "cublas_calls": sorted(set(calls)), "missing": missing,
            "nvrtc_options": options, "nvrtc_logs": [_read(p) for p in failures],
            "nvrtc_arch": NvrtcArch(*fixes[-1], len(fixes)) if fixes else None}


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _first_lines(text, n=LOG_LINES):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[:n])


# --- cuBLAS names ---------------------------------------------------------------------------

def cublas_names(standin_path):
    """[(name, required)] of the cuBLAS functions libgpuarray 0.7.6 looks up, as the stand-in
    lists them (it exports each of them)."""
    names = (ctypes.c_char_p * 64).in_dll(ctypes.CDLL(standin_path), "xor_gpu_cublas_names")
    out = []
    for raw in names:
        if raw is None:
            break
        name = raw.decode()
        out.append((name.rstrip("?"), not name.endswith("?")))
    return out


def check_cublas(real_path, names):
    """{"resolved": [...], "missing": [...], "missing_optional": [...]} of `names` in the real
    cuBLAS (its Lt loaded first, from the same folder, as cuda_libs does)."""
    lt = os.path.join(os.path.dirname(real_path), os.path.basename(real_path).replace("libcublas", "libcublasLt"))
    if os.path.exists(lt):
        ctypes.CDLL(lt)
    lib = ctypes.CDLL(real_path)
    result = {"resolved": [], "missing": [], "missing_optional": []}
    for name, required in names:
        key = "resolved" if hasattr(lib, name) else "missing" if required else "missing_optional"
        result[key].append(name)
    return result


# --- the whole check --------------------------------------------------------------------------

def nvrtc_arch(options):
    """The architecture libgpuarray passed to NVRTC ('-arch compute_90'), or None."""
    for line in options:
        match = re.search(r"-arch[= ](\S+)", line)
        if match:
            return match.group(1)
    return None


def _compile_failure(compiled, cc, asked, given, logs):
    """One line: why the child failed, with the first lines of NVRTC's log, and what went
    wrong with the architecture when NVRTC was not given the right one."""
    why = (compiled.get("error") or "unknown error").split("; run 'xor-gpu doctor", 1)[0]
    log = next((text for text in logs if text.strip()), None)
    if log:
        why = f"{_first_lines(why, 1)}; NVRTC's log: {_first_lines(log)}"
    expected = f"compute_{cuda_arch.number(cc)}"
    if asked and (given or asked) != expected:
        why = f"{TRUNCATION.format(cc=f'{cc[0]}.{cc[1]}', bin_id=asked, arch=expected)}; {why}"
    return why


def run(arch, cc, policy, work, driver):
    """The report (a dict) for one architecture, for a node whose driver `driver` describes
    ({"cuda", "from"}); raises nothing for a kernel that fails."""
    standins = cuda_standin.build(sources=cuda_standin.STANDINS)
    folders = [_run_folder(standins, work), cuda_libs.recording_folder(policy, os.path.join(work, "cuda-libs"))]
    cuda = policy.target.cuda or policy.nvrtc.version[:2]  # unknown: a driver that runs NVRTC's PTX
    compiled = _run_child(_child_env(folders, work, cc, cuda))
    record = read_record(os.path.join(work, "record"))
    names = check_cublas(policy.cublas.path, cublas_names(standins["libcublas.so"]))
    given = record["nvrtc_arch"]
    data = {
        "schema": SCHEMA,
        "executed": False,
        "note": NOT_EXECUTED,
        "arch": arch,
        "compute_capability": f"{cc[0]}.{cc[1]}",
        "driver": driver,
        "device": compiled.get("device"),
        "libgpuarray_arch": nvrtc_arch(record["nvrtc_options"]),
        "nvrtc_arch": given.to_dict() if given else None,
        "nvrtc_options": record["nvrtc_options"],
        "nvrtc": {"path": policy.nvrtc.path, "version": cuda_arch.text(policy.nvrtc.version)},
        "cublas": {"path": policy.cublas.path, "version": cuda_arch.text(policy.cublas.version),
                   "names": names, "calls": record["cublas_calls"]},
        "cuda_libs_notes": policy.notes,
        "ops": compiled.get("ops", []),
        "cudnn": compiled.get("cudnn"),  # as a run would: off unless THEANO_FLAGS enable it
        "kernels": record["kernels"],
        "launches_recorded": record["launches"],
        "ptxas": None,
        "problems": [],
    }
    if not compiled["ok"]:
        failure = _compile_failure(compiled, cc, data["libgpuarray_arch"], given and given.compiled_for,
                                   record["nvrtc_logs"])
        data["problems"].append(f"a kernel did not compile for {arch}: {failure}")
    if record["missing"]:
        data["problems"].append(f"kernels missing from their modules: {', '.join(record['missing'])}")
    if compiled["ok"] and not record["kernels"]:
        data["problems"].append("no kernel was compiled: the graph holds no GPU kernel")
    if names["missing"]:
        data["problems"].append(f"cuBLAS {policy.cublas.path} lacks {', '.join(names['missing'])}, which "
                                "libgpuarray 0.7.6 needs")
    _assemble_all(data, work, policy.nvrtc)
    return data


def _assemble_all(data, work, nvrtc):
    """Every module's PTX assembled by a ptxas at least as new as `nvrtc` (ptxas.choose)."""
    try:
        ptxas, version, skipped = ptxas_tool.choose(nvrtc.path, nvrtc.version, data["arch"])
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        data["problems"].append(f"a ptxas does not run: {' '.join(str(exc).split()) or 'no version'}")
        return
    data["ptxas"] = {"path": ptxas, "version": version, "skipped": skipped}
    if not ptxas:
        data["ptxas"]["note"] = (f"no ptxas at least as new as NVRTC {data['nvrtc']['version']} that assembles for "
                                 f"{data['arch']}: PTX not assembled (NVIDIA's nvcc wheel of that CUDA version, "
                                 "or CUDA_HOME naming such a toolkit, brings one)")
        return
    for module in sorted({k["module"] for k in data["kernels"]}):
        ptx = os.path.join(work, "record", f"ptx-{module}.ptx")
        figures, failure = ptxas_tool.assemble(ptxas, ptx, data["arch"])
        if failure:
            data["problems"].append(f"ptxas -arch={data['arch']} rejected module {module}: {failure}")
            continue
        for kernel in (k for k in data["kernels"] if k["module"] == module):
            kernel.update(figures.get(kernel["name"], {}))


def format_report(data):
    fixed = data["nvrtc_arch"]
    asked = f"libgpuarray asked NVRTC for {data['libgpuarray_arch'] or 'nothing'}" + (
        f", given {fixed['compiled_for']} by xor_gpu's NVRTC front" if fixed else "")
    ptxas = data["ptxas"] or {}
    lines = [f"compile-only   {data['arch']} (compute capability {data['compute_capability']}), {asked}",
             f"driver         " + (f"CUDA {data['driver']['cuda']} ({data['driver']['from']})" if data["driver"]["cuda"]
                                      else data["driver"]["from"]),
             f"nvrtc          {data['nvrtc']['version']} {data['nvrtc']['path']}",
             f"cublas         {data['cublas']['version']} {data['cublas']['path']}: "
             f"{len(data['cublas']['names']['resolved'])} names found, "
             f"{len(data['cublas']['names']['missing'])} missing",
             f"ptxas          " + (f"{ptxas['version']} {ptxas['path']}" if ptxas.get("path")
                                      else ptxas.get("note", "none")),
             f"cudnn          {render.cudnn(data.get('cudnn'))}"]
    for note in data["cuda_libs_notes"] + ptxas.get("skipped", []):
        lines.append(f"  note: {note}")
    lines.append(f"kernels        {len(data['kernels'])}")
    for k in data["kernels"]:
        figures = (f"{k['registers']} registers, {k['spill_stores']}/{k['spill_loads']} bytes spilled (stores/loads)"
                   if "registers" in k else "not assembled")
        lines.append(f"  {k['name']:<40} {k['ptx_bytes'] or 0:>7} B PTX  {figures}")
    lines += [f"problem: {p}" for p in data["problems"]]
    lines.append(data["note"])
    return "\n".join(lines)


def main(device, arch, json_path, driver=None, host=None):
    """`doctor --compile-only`: exit 0 when every kernel compiled and assembled and every cuBLAS
    name is there, 5 otherwise (report written), 3 without an NVRTC/cuBLAS the rule accepts
    for that GPU and driver, 2 bad input. `host`: the machine searched (tests)."""
    arch, cc, cuda, where = check_args(device, arch, driver)
    files.check_writable(json_path)
    policy = cuda_libs.resolve(host=host, target=cuda_libs.Target(cuda, (cc,)))
    why = cuda_libs.problem(policy)
    if why:
        raise DeviceError(f"{why}: {cuda_libs.fix(policy)}")
    work = tempfile.mkdtemp(prefix="xor_gpu-compile-only.")
    try:
        data = run(arch, cc, policy, work, {"cuda": cuda_arch.text(cuda) if cuda else None, "from": where})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(format_report(data))
    if json_path:
        files.write_json(json_path, data)
    if data["problems"]:
        raise CheckFailed(data["problems"][0])
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
