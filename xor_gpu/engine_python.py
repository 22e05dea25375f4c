"""Which Python runs an engine. PyTensor needs numpy 2 and Theano numpy < 1.24: the two live in
separate Python environments. A run of an engine whose package this Python cannot import goes
to the Python named by the engine's variable (XOR_GPU_THEANO_PYTHON, XOR_GPU_PYTENSOR_PYTHON),
once it is known to import xor_gpu and find that package.
"""
import importlib.util
import os
import subprocess
import sys

from xor_gpu.engines import INSTALL, get
from xor_gpu.errors import DeviceError, exit_words


def python_variable(engine):
    return f"XOR_GPU_{get(engine).package.upper()}_PYTHON"


def python_for(engine):
    """The Python that runs `engine`: this one when it can import the engine's package, else
    the one the engine's variable names. DeviceError (exit 3) when neither can."""
    package, variable = get(engine).package, python_variable(engine)
    if importlib.util.find_spec(package) is not None:
        return sys.executable
    named = os.environ.get(variable)
    if not named:
        raise DeviceError(f"engine {engine} is not installed in this Python ({sys.executable}): "
                          f"{INSTALL[package]}, and set {variable} to that environment's python")
    if os.path.isdir(named) or not os.access(named, os.X_OK):
        raise DeviceError(f"engine {engine} is not installed: {variable}={named} is not a Python; {INSTALL[package]}")
    _check_python(engine, variable, named, package)
    return named


_CHECKED = set()


def _check_python(engine, variable, python, package):
    """That Python must import xor_gpu and find the engine's package (once per process: ~0.1 s)."""
    if python in _CHECKED:
        return
    try:
        # Found, not imported: Theano's import needs the flags backend.py sets first.
        code = f"import importlib.util as u, xor_gpu; u.find_spec({package!r}) or exit('no module named {package}')"
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
        problem = proc.returncode and (proc.stderr.strip().splitlines() or [exit_words(proc.returncode)])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    if problem:
        raise DeviceError(f"engine {engine} is not installed: {variable}={python} cannot import xor_gpu and "
                          f"{package} ({problem}); {INSTALL[package]}, with xor_gpu installed there "
                          "(pip install --no-deps .)")
    _CHECKED.add(python)
