"""`xor-gpu doctor --device cuda --compile-only [--arch sm_XY]`: the CUDA path up to the first
kernel launch, on a machine without a GPU (a login node, CI).

A child process runs Theano on a cuda context with xor_gpu's stand-in driver and cuBLAS
(xor_gpu/cuda_standin) first on LD_LIBRARY_PATH and the REAL NVRTC that cuda_libs' policy
chooses: it compiles the seed graph and makes one training call, so that libgpuarray writes
every kernel's source and compiles it with NVRTC through its own code path and options.
The stand-in records each module's PTX and kernel names; this process then assembles each
PTX with NVIDIA's ptxas for the architecture (registers, spills), checks every cuBLAS name
libgpuarray looks up in the real cuBLAS, and reports. Nothing runs on a GPU and no number is
checked: the report says so ("executed": false) and compare/check refuse it as evidence.
"""
import ctypes
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from xor_gpu import backend, child, cuda_libs, cuda_standin, devices, files, render
from xor_gpu.config import TrainConfig
from xor_gpu.model import XorModel
from xor_gpu import ptxas as ptxas_tool
from xor_gpu.errors import EXIT_OK, CheckFailed, ConfigError, DeviceError, XorGpuError

SCHEMA = "xor_gpu.compile-only/1"
DEFAULT_ARCH = "sm_90"
# NVIDIA's GPU architectures (compute capability without the dot).
KNOWN_ARCHS = (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 103, 110, 120, 121)
NOT_EXECUTED = ("Nothing was executed: kernels were compiled and assembled only, no kernel ran on a GPU "
                "and no number was checked. This report is not evidence that training works.")
# libgpuarray 0.7.6 writes "compute_" + major + minor into a buffer of len("compute_") + 3 bytes
# and checks snprintf's result with > instead of >=: compute capability 10.0 silently becomes
# "compute_10" (and 12.0 "compute_12").
TRUNCATION = ("libgpuarray 0.7.6 cuts the architecture name for compute capability {cc} to '{bin_id}' "
              "(its buffer holds 10 characters), so NVRTC is not asked for {arch}")
CHILD_TIMEOUT = 900
LOG_LINES = 6


def parse_arch(text):
    """'sm_90' -> (9, 0). ConfigError for anything else."""
    match = re.fullmatch(r"sm_(\d{2,3})", text or "")
    if not match or int(match.group(1)) not in KNOWN_ARCHS:
        raise ConfigError(f"--arch {text!r} is not an NVIDIA GPU architecture: expected one of "
                          f"{', '.join(f'sm_{a}' for a in KNOWN_ARCHS)}")
    return divmod(int(match.group(1)), 10)


def this_gpu_arch():
    """The first GPU's architecture through the NVIDIA driver, or None without one."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
        count, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        if cu.cuInit(0) or cu.cuDeviceGetCount(ctypes.byref(count)) or count.value < 1:
            return None
        if cu.cuDeviceGetAttribute(ctypes.byref(major), 75, 0) or cu.cuDeviceGetAttribute(ctypes.byref(minor), 76, 0):
            return None
    except (OSError, AttributeError):
        return None
    return f"sm_{major.value}{minor.value}"


def check_args(device, arch):
    """(arch, (major, minor)) for the command line's --device and --arch; ConfigError."""
    if device is not None and not devices.device(device).is_cuda:
        raise ConfigError(f"--compile-only compiles CUDA kernels: it needs --device cuda, not {device}")
    arch = arch if arch is not None else this_gpu_arch() or DEFAULT_ARCH
    return arch, parse_arch(arch)


# --- the run folder and the child -----------------------------------------------------------

def _run_folder(standins, root):
    """A folder of links for the child: the stand-ins as libcuda.so, libcublas.so and
    libnvrtc.so (the recorder, which opens the real NVRTC by its path)."""
    libs = os.path.join(root, "libs")
    os.makedirs(libs)
    for name, path in standins.items():
        os.symlink(path, os.path.join(libs, name))
    for sub in ("record", "kernel-cache"):
        os.makedirs(os.path.join(root, sub))
    return libs


def _child_env(libs, root, cc, nvrtc):
    env = dict(os.environ)
    paths = [libs, *(p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p)]
    # libgpuarray's kernel disk cache: an empty one of this run's, so that NVRTC compiles every
    # kernel now, and the stand-in's module images never reach the cache a real run reads.
    cache = f"gpuarray.cache_path={os.path.join(root, 'kernel-cache')}"
    flags = ",".join(filter(None, (env.get("THEANO_FLAGS"), cache)))
    env.update(LD_LIBRARY_PATH=os.pathsep.join(paths), THEANO_FLAGS=flags,
               XOR_GPU_STANDIN_CC=f"{cc[0]}.{cc[1]}", XOR_GPU_STANDIN_RECORD=os.path.join(root, "record"),
               XOR_GPU_STANDIN_NVRTC=nvrtc)
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
    """{"kernels": [{name, module, ptx_bytes, target}], "launches": {name: n}, "cublas_calls": [...],
    "missing": [...]} from the stand-ins' calls.tsv and PTX files."""
    modules, kernels, launches, calls, missing, options = {}, [], {}, [], [], []
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
                            "target": target.group(1).rstrip(",") if target else None})
        elif kind == "launch":
            launches[rest[0]] = launches.get(rest[0], 0) + 1
        elif kind == "cublas":
            calls.append(rest[0])
        elif kind == "missing":
            missing.append(rest[1])
        elif kind == "nvrtc" and rest[0] not in options:
            options.append(rest[0])
    failures = sorted(glob.glob(os.path.join(folder, "nvrtc-failure-*.log")),
                      key=lambda p: int(re.findall(r"\d+", os.path.basename(p))[0]))
    return {"kernels": kernels, "launches": launches, "cublas_calls": sorted(set(calls)), "missing": missing,
            "nvrtc_options": options, "nvrtc_logs": [_read(p) for p in failures]}


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


def _compile_failure(compiled, cc, asked, logs):
    """One line: why the child failed, with the first lines of NVRTC's log, and what went
    wrong with the architecture when libgpuarray did not ask NVRTC for the right one."""
    why = (compiled.get("error") or "unknown error").split("; run 'xor-gpu doctor", 1)[0]
    log = next((text for text in logs if text.strip()), None)
    if log:
        why = f"{_first_lines(why, 1)}; NVRTC's log: {_first_lines(log)}"
    expected = f"compute_{cc[0]}{cc[1]}"
    if asked and asked != expected:
        why = f"{TRUNCATION.format(cc=f'{cc[0]}.{cc[1]}', bin_id=asked, arch=expected)}; {why}"
    return why


def run(arch, cc, policy, work):
    """The report (a dict) for one architecture; raises nothing for a kernel that fails."""
    standins = cuda_standin.build()
    libs = _run_folder(standins, work)
    compiled = _run_child(_child_env(libs, work, cc, os.path.realpath(policy.nvrtc.path)))
    record = read_record(os.path.join(work, "record"))
    names = check_cublas(policy.cublas.path, cublas_names(standins["libcublas.so"]))
    data = {
        "schema": SCHEMA,
        "executed": False,
        "note": NOT_EXECUTED,
        "arch": arch,
        "compute_capability": f"{cc[0]}.{cc[1]}",
        "device": compiled.get("device"),
        "libgpuarray_arch": nvrtc_arch(record["nvrtc_options"]),
        "nvrtc_options": record["nvrtc_options"],
        "nvrtc": {"path": policy.nvrtc.path, "version": ".".join(map(str, policy.nvrtc.version))},
        "cublas": {"path": policy.cublas.path, "version": ".".join(map(str, policy.cublas.version)),
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
        data["problems"].append(f"a kernel did not compile for {arch}: "
                                f"{_compile_failure(compiled, cc, data['libgpuarray_arch'], record['nvrtc_logs'])}")
    if record["missing"]:
        data["problems"].append(f"kernels missing from their modules: {', '.join(record['missing'])}")
    if compiled["ok"] and not record["kernels"]:
        data["problems"].append("no kernel was compiled: the graph holds no GPU kernel")
    if names["missing"]:
        data["problems"].append(f"cuBLAS {policy.cublas.path} lacks {', '.join(names['missing'])}, which "
                                "libgpuarray 0.7.6 needs")
    _assemble_all(data, work)
    return data


def _assemble_all(data, work):
    ptxas = ptxas_tool.find(data["nvrtc"]["path"])
    if not ptxas:
        data["ptxas"] = {"path": None, "version": None,
                         "note": "ptxas not found (pip install 'xor_gpu[cuda]' brings NVIDIA's nvcc wheel): "
                                 "PTX not assembled"}
        return
    try:
        data["ptxas"] = {"path": ptxas, "version": ptxas_tool.version(ptxas)}
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        data["problems"].append(f"{ptxas} does not run: {' '.join(str(exc).split()) or 'no version'}")
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
    lines = [f"compile-only   {data['arch']} (compute capability {data['compute_capability']}), "
             f"libgpuarray asked NVRTC for {data['libgpuarray_arch'] or 'nothing'}",
             f"nvrtc          {data['nvrtc']['version']} {data['nvrtc']['path']}",
             f"cublas         {data['cublas']['version']} {data['cublas']['path']}: "
             f"{len(data['cublas']['names']['resolved'])} names found, "
             f"{len(data['cublas']['names']['missing'])} missing",
             f"ptxas          {(data['ptxas'] or {}).get('version') or 'not found'}",
             f"cudnn          {render.cudnn(data.get('cudnn'))}"]
    for note in data["cuda_libs_notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"kernels        {len(data['kernels'])}")
    for k in data["kernels"]:
        figures = (f"{k['registers']} registers, {k['spill_stores']}/{k['spill_loads']} bytes spilled (stores/loads)"
                   if "registers" in k else "not assembled")
        lines.append(f"  {k['name']:<40} {k['ptx_bytes'] or 0:>7} B PTX  {figures}")
    lines += [f"problem: {p}" for p in data["problems"]]
    lines.append(data["note"])
    return "\n".join(lines)


def main(device, arch, json_path):
    """`doctor --compile-only`: exit 0 when every kernel compiled and assembled and every cuBLAS
    name is there, 5 otherwise (report written), 3 without NVRTC/cuBLAS, 2 bad input."""
    arch, cc = check_args(device, arch)
    files.check_writable(json_path)
    policy = cuda_libs.resolve()
    why = cuda_libs.problem(policy)
    if why:
        raise DeviceError(f"{why}: {cuda_libs.HINT}")
    work = tempfile.mkdtemp(prefix="xor_gpu-compile-only.")
    try:
        data = run(arch, cc, policy, work)
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
