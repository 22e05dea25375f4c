"""The offline bundle's launch: bundle/run.sh finds the bundle's Python (unpacking the archive
once) and runs `python -I -B -m xor_gpu.launch bundle ...` (isolated from the caller's Python
variables, writing no bytecode into the bundle). That makes the whole environment of the run
(`bundle_env`: the caller's variables that may pass, the bundle's caches, libraries and
compiler flags) and the default command, then execs `python -m xor_gpu COMMAND ARGS`, or for
`test --device DEV` the package's device tests, shipped in the bundle, with its pytest.
"""
import argparse
import os
import platform
import sys

from xor_gpu import cuda_search, devices, host, private_folder
from xor_gpu.errors import ConfigError, DeviceError, XorGpuError
from xor_gpu.reexec import exec_xor_gpu, wanted_env

# The caller's variables a bundle run keeps: PATH (g++ from a compiler module, a python3 that
# holds NVIDIA wheels), the GPU selection and OpenCL setup of a node, the thread counts and
# OpenBLAS kernels a scheduler or user sets, the job's identity (every SLURM_* variable: the
# summary names the job), qemu-user's settings (QEMU_*: a bundle of another architecture run
# under emulation, e.g. an aarch64 one tried on x86-64, keeps its system root and CPU model),
# and the package's own switches. Its Python variables, THEANO_FLAGS and XOR_GPU_COMPILEDIR do
# not pass.
BUNDLE_PASSES = ("HOME", "PATH", "USER", "TERM", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                 "NVIDIA_VISIBLE_DEVICES", "CUDA_HOME", "CUDA_PATH", "OCL_ICD_VENDORS", "OCL_ICD_FILENAMES",
                 "POCL_DEVICES", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                 "XOR_GPU_DEBUG", "XOR_GPU_REQUIRE_GPU", "XOR_GPU_PYTENSOR_PYTHON")
BUNDLE_PASS_PREFIXES = ("SLURM_", "QEMU_")
BUNDLE_COMMAND = ("check", "--device", "cuda")  # what a GPU node runs when given no command
BUNDLE_TESTS = "tests"  # the package's device tests, beside root/ (bundle/build.py puts them there)
STATE_FOLDERS = ("cache", "mpl", "nv", "pocl", "theano")  # every file a run writes goes under --cache
STATE_FIX = "use --cache on a folder of your own"  # bundle/run.sh's option


def bundle_env(root, state, cuda_libs=(), environ=None):
    """The whole environment of a run of the bundle unpacked at `root`, its caches in `state`."""
    environ = os.environ if environ is None else environ
    libs = [f"{root}/usr/lib/{platform.machine()}-linux-gnu", f"{root}/usr/lib"]
    caller = [p for p in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    env = {name: value for name, value in environ.items()
           if value and (name in BUNDLE_PASSES or name.startswith(BUNDLE_PASS_PREFIXES))}
    env.update({
        "TMPDIR": environ.get("TMPDIR") or "/tmp",
        "LANG": "C.UTF-8",
        # The bundle's libraries first; a driver the caller finds through its own path after them.
        "LD_LIBRARY_PATH": os.pathsep.join(libs + caller),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # the unpacked bundle stays as archived
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{state}/mpl",
        "XOR_GPU_COMPILEDIR": f"{state}/theano",
        "POCL_CACHE_DIR": f"{state}/pocl",
        "XDG_CACHE_HOME": f"{state}/cache",  # the folder of NVIDIA library links (cuda_libs), and others'
        "CUDA_CACHE_PATH": f"{state}/nv",  # the driver's cache of the kernels it compiled from PTX
        "XOR_GPU_MANIFEST": f"{os.path.dirname(root)}/MANIFEST.json",
        # Debian's pyconfig.h needs the bundle's headers, and Theano's own -L names the build
        # machine's LIBDIR: the bundle's folders come first.
        "THEANO_FLAGS": f"gcc.cxxflags=-I{root}/usr/include {' '.join(f'-L{lib}' for lib in libs)}",
    })
    cuda = os.pathsep.join(cuda_libs) or environ.get("XOR_GPU_CUDA_LIBS", "")
    if cuda:
        env["XOR_GPU_CUDA_LIBS"] = cuda
    return env


def bundle_command(args):
    """COMMAND ARGS for xor-gpu: `check --device cuda` by default; check on cuda unless ARGS
    name a device."""
    if not args or args[0].startswith("-"):
        args = [BUNDLE_COMMAND[0], *args]
    named = any(a == "--device" or a.startswith("--device=") for a in args[1:])
    if args[0] == BUNDLE_COMMAND[0] and not named:
        args = [*BUNDLE_COMMAND, *args[1:]]
    return args


def bundle_main(argv):
    """`python -m xor_gpu.launch bundle ROOT STATE [--cuda-libs DIR]... [-- COMMAND ARGS]`:
    run.sh's last step, in the bundle's Python."""
    parser = argparse.ArgumentParser(prog="python -m xor_gpu.launch")
    parser.add_argument("what", choices=["bundle"])
    parser.add_argument("root", help="the unpacked bundle's root folder")
    parser.add_argument("state", help="the folder of its caches")
    parser.add_argument("--cuda-libs", action="append", default=[], metavar="DIR")
    split = argv.index("--") if "--" in argv else len(argv)  # the command's own arguments follow
    args = parser.parse_args(argv[:split])
    command = bundle_command(argv[split + 1:])
    try:
        for folder in STATE_FOLDERS:  # run.sh has checked the state folder; these are checked here
            private_folder.make(os.path.join(args.state, folder), STATE_FIX)
        env = bundle_env(args.root, args.state, args.cuda_libs)
        if command[0] == "test":
            return bundle_test(os.path.join(os.path.dirname(args.root), BUNDLE_TESTS), command[1:], env)
    except XorGpuError as exc:
        print(f"xor-gpu{' test' if command[0] == 'test' else ''}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    exec_xor_gpu(sys.executable, command, env)


def bundle_test(tests, args, env):
    """`test [--device DEV] [PYTEST ARGS]`: the package's device tests (those tox's gpu env runs:
    Gpu ops in the graph, determinism, parity, the tolerance enforced, the CUDA libraries'
    wiring; the PyTensor sweep where XOR_GPU_PYTENSOR_PYTHON names a PyTensor Python) on DEV
    (default cuda), with the bundle's pytest. A device that cannot be used fails (exit 3),
    never skips; otherwise the exit status is pytest's."""
    parser = argparse.ArgumentParser(prog="xor_gpu-bundle-run.sh test", add_help=False)
    parser.add_argument("--device", default=BUNDLE_COMMAND[2])
    known, pytest_args = parser.parse_known_args(args)
    dev = devices.device(known.device)
    missing = host.cuda_missing() if dev.is_cuda else None
    if missing:
        raise DeviceError(f"device {dev} is not usable here: {missing}")
    if not os.path.isdir(tests):
        raise ConfigError(f"no tests in this bundle ({tests}): build it with this version's bundle/build.py")
    env = {**env, "THEANO_FLAGS": f"{env['THEANO_FLAGS']},device={dev},floatX=float32",
           "XOR_GPU_REQUIRE_GPU": "1"}
    env.update(wanted_env([dev], cuda_search.Host(environ=env)))
    sys.stdout.flush()
    os.chdir(tests)
    os.execve(sys.executable, [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "device",
                               *pytest_args, tests], env)


if __name__ == "__main__":
    sys.exit(bundle_main(sys.argv[1:]))
