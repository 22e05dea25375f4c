"""NVIDIA's ptxas: which one assembles an NVRTC's PTX (`choose`: never one older than that
NVRTC, whose PTX ISA it would refuse, and one that knows the architecture), its version, and
the registers and spills `ptxas -v` reports for each kernel of a PTX module
(`doctor --compile-only`)."""
import glob
import os
import re
import shutil
import subprocess
import sys

TIMEOUT = 120
LOG_LINES = 6
TOOLKIT = "/usr/local/cuda"


def candidates(nvrtc=None):
    """Every ptxas there is, most preferred first, each once: beside the NVRTC at `nvrtc` (a
    toolkit's lib64/../bin, the nvcc wheel next to an NVRTC wheel: nvidia/cuda_nvcc/bin for
    CUDA 12's, nvidia/cu13/bin for CUDA 13's), the nvcc wheels of this Python, $CUDA_HOME,
    $CUDA_PATH, /usr/local/cuda, PATH."""
    roots = []
    if nvrtc:
        lib = os.path.dirname(os.path.realpath(nvrtc))
        roots += [os.path.dirname(lib), os.path.join(os.path.dirname(os.path.dirname(lib)), "cuda_nvcc")]
    for path in sys.path:
        nvidia = os.path.join(path or ".", "nvidia")
        roots += [os.path.join(nvidia, "cuda_nvcc"), *sorted(glob.glob(os.path.join(nvidia, "cu[0-9]*")))]
    roots += [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH")] + [TOOLKIT]
    found, seen = [], set()
    for path in [os.path.join(root, "bin", "ptxas") for root in filter(None, roots)] + [shutil.which("ptxas")]:
        if path and os.access(path, os.X_OK) and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            found.append(path)
    return found


def version(ptxas):
    done = subprocess.run([ptxas, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    match = re.search(r"release [\d.]+, V([\d.]+)", done.stdout)
    return match.group(1) if match else done.stdout.strip().splitlines()[-1]


def archs(ptxas):
    """The architectures ptxas assembles for, as its --gpu-name lists them: {70, 75, ...}."""
    done = subprocess.run([ptxas, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    return {int(n) for n in re.findall(r"'sm_(\d+)'", done.stdout)}


def _numbers(text):
    return tuple(int(n) for n in re.findall(r"\d+", text))


def choose(nvrtc_path, nvrtc_version, arch):
    """(ptxas, its version, notes): the first ptxas (candidates) not older than NVRTC
    `nvrtc_version` (major, minor) that assembles for `arch` ('sm_90'); (None, None, notes)
    when there is none. Each one passed over gets a note saying why. OSError and
    subprocess errors of a ptxas that does not run are raised."""
    notes, wanted, number = [], tuple(nvrtc_version[:2]), int(arch[3:])
    for path in candidates(nvrtc_path):
        found = version(path)
        if _numbers(found)[:2] < wanted:
            notes.append(f"{path}: ptxas {found} is older than NVRTC {'.'.join(map(str, wanted))}, whose PTX it "
                         "would refuse, skipped")
        elif number not in archs(path):
            notes.append(f"{path}: ptxas {found} cannot assemble for {arch}, skipped")
        else:
            return path, found, notes
    return None, None, notes


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
