"""NVIDIA's ptxas: where it is, its version, and the registers and spills `ptxas -v` reports
for each kernel of a PTX module (`doctor --compile-only`)."""
import os
import re
import shutil
import subprocess
import sys

TIMEOUT = 120
LOG_LINES = 6


def find(nvrtc=None):
    """NVIDIA's ptxas, or None: beside the chosen NVRTC (a toolkit's lib64/../bin, or the nvcc
    wheel next to the NVRTC wheel), the nvcc wheel of this Python (the cuda extra),
    $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, PATH."""
    roots = []
    if nvrtc:
        lib = os.path.dirname(os.path.realpath(nvrtc))
        roots += [os.path.dirname(lib), os.path.join(os.path.dirname(os.path.dirname(lib)), "cuda_nvcc")]
    roots += [os.path.join(p or ".", "nvidia", "cuda_nvcc") for p in sys.path]
    roots += [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")] + ["/usr/local/cuda"]
    for root in filter(None, roots):
        path = os.path.join(root, "bin", "ptxas")
        if os.access(path, os.X_OK):
            return path
    return shutil.which("ptxas")


def version(ptxas):
    done = subprocess.run([ptxas, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    match = re.search(r"release [\d.]+, V([\d.]+)", done.stdout)
    return match.group(1) if match else done.stdout.strip().splitlines()[-1]


def parse(text):
    """{kernel: {"registers", "spill_stores", "spill_loads", "stack_bytes"}} from `ptxas -v`."""
    found, current = {}, None
    for line in text.splitlines():
        entry = re.search(r"(?:Compiling entry function|Function properties for) '?([\w$]+)'?", line)
        if entry:
            current = found.setdefault(entry.group(1), {})
            continue
        if current is None:
            continue
        spills = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if spills:
            current.update(stack_bytes=int(spills.group(1)), spill_stores=int(spills.group(2)),
                           spill_loads=int(spills.group(3)))
        registers = re.search(r"Used (\d+) registers", line)
        if registers:
            current["registers"] = int(registers.group(1))
    return found


def assemble(ptxas, ptx_path, arch):
    """(figures by kernel, None) or (None, the first lines of ptxas's log)."""
    done = subprocess.run([ptxas, f"-arch={arch}", "-v", ptx_path, "-o", os.devnull], capture_output=True,
                          text=True, timeout=TIMEOUT)
    log = (done.stderr + done.stdout).strip()
    if done.returncode != 0:
        return None, " | ".join(line.strip() for line in log.splitlines()[:LOG_LINES] if line.strip())
    return parse(log), None
