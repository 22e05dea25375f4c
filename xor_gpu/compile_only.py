"""`xor-gpu doctor --device cuda --compile-only [--arch sm_XY] [--driver VERSION]`: the CUDA
path up to the first kernel launch, on a machine without a GPU (a login node, CI), for the
GPU and driver of the nodes the kernels are for.

The NVRTC and cuBLAS are those cuda_libs' rule chooses for such a node: the driver given
(--driver: its CUDA version, or its own version), else this machine's, else unknown (then
only the architecture is checked). A child process (xor_gpu/compile_child.py) runs Theano on
a cuda context with xor_gpu's stand-in driver (reporting that architecture and driver) and
cuBLAS (xor_gpu/cuda_standin) first on LD_LIBRARY_PATH, then the same folder of links a run gets,
whose libnvrtc.so is xor_gpu's NVRTC front before the REAL NVRTC: it compiles the seed graph
and makes one training call, so that libgpuarray writes every kernel's source and compiles
it with NVRTC through its own code path and options, which the front records (and, for
compute capability 10 and more, gives in full, as on a real node). The stand-in records each
module's PTX and kernel names (xor_gpu/cuda_standin/record.py); this process then assembles
each PTX with a ptxas at least as new as that NVRTC, for the architecture (registers, spills),
checks every cuBLAS name libgpuarray looks up in the real cuBLAS, and reports
(results.compile_only.CompileOnly). Nothing runs on a GPU and no number is checked: the report
says so ("executed": false) and compare/check refuse it as evidence.
"""
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile

from xor_gpu import child, cuda_arch, cuda_libs, cuda_search, cuda_standin, files, render_doctor
from xor_gpu import ptxas as ptxas_tool
from xor_gpu.cuda_standin import record as standin_record
from xor_gpu.errors import EXIT_OK, CheckFailed, ConfigError, DeviceError, TimedOut
from xor_gpu.results.compile_only import (CompiledGraph, CompileOnly, CublasCheck, CublasNames, Ptxas,
                                          TargetDriver)

DEFAULT_ARCH = "sm_90"
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
    for the command line's --device (a Device, or None), --arch and --driver; ConfigError.
    Without --arch: this machine's first GPU, else sm_90; without --driver: this machine's
    driver, else unknown."""
    if device is not None and not device.is_cuda:
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


def _run_child(env):
    """The ChildRun of the compiling child (xor_gpu/compile_child.py): its CompiledGraph, or its error."""
    with child.Process("compile-only child") as proc:
        run = proc.start(sys.executable, "xor_gpu.compile_child", [proc.report], env).answer(
            CompiledGraph.from_dict, CHILD_TIMEOUT)
    if run.exit_status == TimedOut.exit_status:
        raise DeviceError(f"the {run.error}")
    return run


def _first_lines(text, n=LOG_LINES):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[:n])


# --- cuBLAS names ---------------------------------------------------------------------------

def check_cublas(real_path, names):
    """CublasNames of `names` ([(name, required)]) in the real cuBLAS (its Lt loaded first, from
    the same folder, as cuda_libs does)."""
    lt = os.path.join(os.path.dirname(real_path), os.path.basename(real_path).replace("libcublas", "libcublasLt"))
    if os.path.exists(lt):
        ctypes.CDLL(lt)
    lib = ctypes.CDLL(real_path)
    result = CublasNames(resolved=[], missing=[], missing_optional=[])
    for name, required in names:
        found = result.resolved if hasattr(lib, name) else result.missing if required else result.missing_optional
        found.append(name)
    return result


# --- the whole check --------------------------------------------------------------------------

def _compile_failure(compiled, cc, asked, given, logs):
    """One line: why the child failed (its ChildRun), with the first lines of NVRTC's log, and
    what went wrong with the architecture when NVRTC was not given the right one."""
    error = f"{compiled.error_type}: {compiled.error}" if compiled.error_type else compiled.error
    why = (error or "unknown error").split("; run 'xor-gpu doctor", 1)[0]
    log = next((text for text in logs if text.strip()), None)
    if log:
        why = f"{_first_lines(why, 1)}; NVRTC's log: {_first_lines(log)}"
    expected = f"compute_{cuda_arch.number(cc)}"
    if asked and (given or asked) != expected:
        why = f"{TRUNCATION.format(cc=f'{cc[0]}.{cc[1]}', bin_id=asked, arch=expected)}; {why}"
    return why


def run(arch, cc, policy, work, driver):
    """The CompileOnly report for one architecture, for a node whose driver `driver` (a
    TargetDriver) describes; raises nothing for a kernel that fails."""
    standins = cuda_standin.build(sources=cuda_standin.STANDINS)
    folders = [_run_folder(standins, work), cuda_libs.recording_folder(policy, os.path.join(work, "cuda-libs"))]
    cuda = policy.target.cuda or policy.nvrtc.version[:2]  # unknown: a driver that runs NVRTC's PTX
    compiled = _run_child(_child_env(folders, work, cc, cuda))
    record = standin_record.read(os.path.join(work, "record"))
    names = check_cublas(policy.cublas.path, standin_record.cublas_names(standins["libcublas.so"]))
    graph = compiled.report or CompiledGraph(ops=[])
    report = CompileOnly(
        arch=arch, compute_capability=f"{cc[0]}.{cc[1]}", driver=driver, device=graph.device,
        libgpuarray_arch=record.asked_arch(), nvrtc_arch=record.nvrtc_arch, nvrtc_options=record.nvrtc_options,
        nvrtc=cuda_libs.library(policy.nvrtc),
        cublas=CublasCheck(path=policy.cublas.path, version=cuda_arch.text(policy.cublas.version), names=names,
                           calls=record.cublas_calls),
        cuda_libs_notes=policy.notes, ops=graph.ops,
        cudnn=graph.cudnn,  # as a run would: off unless THEANO_FLAGS enable it
        kernels=record.kernels, launches_recorded=record.launches, ptxas=None, problems=[])
    if not compiled.ok:
        failure = _compile_failure(compiled, cc, report.libgpuarray_arch,
                                   record.nvrtc_arch and record.nvrtc_arch.compiled_for, record.nvrtc_logs)
        report.problems.append(f"a kernel did not compile for {arch}: {failure}")
    if record.missing:
        report.problems.append(f"kernels missing from their modules: {', '.join(record.missing)}")
    if compiled.ok and not record.kernels:
        report.problems.append("no kernel was compiled: the graph holds no GPU kernel")
    if names.missing:
        report.problems.append(f"cuBLAS {policy.cublas.path} lacks {', '.join(names.missing)}, which "
                               "libgpuarray 0.7.6 needs")
    _assemble_all(report, work, policy.nvrtc)
    return report


def _assemble_all(report, work, nvrtc):
    """Every module's PTX assembled by a ptxas at least as new as `nvrtc` (ptxas.choose)."""
    try:
        path, version, skipped = ptxas_tool.choose(nvrtc.path, nvrtc.version, report.arch)
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        report.problems.append(f"a ptxas does not run: {' '.join(str(exc).split()) or 'no version'}")
        return
    report.ptxas = Ptxas(path=path, version=version, skipped=skipped)
    if not path:
        report.ptxas.note = (f"no ptxas at least as new as NVRTC {report.nvrtc.version} that assembles for "
                             f"{report.arch}: PTX not assembled (NVIDIA's nvcc wheel of that CUDA version, "
                             "or CUDA_HOME naming such a toolkit, brings one)")
        return
    for module in sorted({k.module for k in report.kernels}):
        figures, failure = ptxas_tool.assemble(path, standin_record.ptx_path(os.path.join(work, "record"), module),
                                               report.arch)
        if failure:
            report.problems.append(f"ptxas -arch={report.arch} rejected module {module}: {failure}")
            continue
        for kernel in (k for k in report.kernels if k.module == module):
            assembled = figures.get(kernel.name, {})
            kernel.stack_bytes, kernel.spill_stores, kernel.spill_loads, kernel.registers = (
                assembled.get(name) for name in ("stack_bytes", "spill_stores", "spill_loads", "registers"))


def main(device, arch, json_path, driver=None, host=None):
    """`doctor --compile-only`: exit 0 when every kernel compiled and assembled and every cuBLAS
    name is there, 5 otherwise (report written), 3 without an NVRTC/cuBLAS the rule accepts
    for that GPU and driver, 2 bad input. `device`: a Device, or None; `host`: the machine
    searched (tests)."""
    arch, cc, cuda, where = check_args(device, arch, driver)
    files.check_writable(json_path)
    policy = cuda_libs.resolve(host=host, target=cuda_libs.Target(cuda, (cc,)))
    why = cuda_libs.problem(policy)
    if why:
        raise DeviceError(f"{why}: {cuda_libs.fix(policy)}")
    work = tempfile.mkdtemp(prefix="xor_gpu-compile-only.")
    try:
        report = run(arch, cc, policy, work, TargetDriver(cuda=cuda_arch.text(cuda) if cuda else None, from_=where))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(render_doctor.compile_only(report))
    if json_path:
        files.write_json(json_path, report.to_dict())
    if report.problems:
        raise CheckFailed(report.problems[0])
    return EXIT_OK
