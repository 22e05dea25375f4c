"""What the stand-ins and the NVRTC front recorded in `doctor --compile-only`'s child: each
module's PTX and kernel names, the launches and cuBLAS calls, the options libgpuarray gave NVRTC
(and the architecture the front gave it instead), NVRTC's logs of what failed; and the cuBLAS
names the stand-in exports, which are those libgpuarray 0.7.6 looks up."""
import ctypes
import dataclasses
import glob
import hashlib
import os
import re

from xor_gpu.results.compile_only import Kernel
from xor_gpu.results.train_report import NvrtcArch


@dataclasses.dataclass
class Record:
    kernels: list  # Kernel, PTX only (not assembled yet)
    launches: dict  # kernel name -> launches
    cublas_calls: list
    missing: list  # kernels missing from their modules
    nvrtc_options: list
    nvrtc_logs: list  # NVRTC's log of each compilation that failed
    nvrtc_arch: NvrtcArch  # None: the front gave every architecture as asked

    def asked_arch(self):
        """The architecture libgpuarray passed to NVRTC ('-arch compute_90'), or None."""
        for line in self.nvrtc_options:
            match = re.search(r"-arch[= ](\S+)", line)
            if match:
                return match.group(1)
        return None


def read(folder):
    """The Record of calls.tsv (the stand-ins' and the NVRTC front's) and the PTX files in `folder`."""
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
            ptx = _read(ptx_path(folder, rest[0]))
            target = re.search(r"^\.target\s+(\S+)", ptx, re.M)
            kernels.append(Kernel(name=rest[1], module=int(rest[0]), ptx_bytes=modules.get(rest[0]),
                                  ptx_sha256=hashlib.sha256(ptx.encode()).hexdigest(),
                                  target=target.group(1).rstrip(",") if target else None))
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
    return Record(kernels, launches, sorted(set(calls)), missing, options, [_read(p) for p in failures],
                  NvrtcArch(asked=fixes[-1][0], compiled_for=fixes[-1][1], compilations=len(fixes)) if fixes else None)


def ptx_path(folder, module):
    return os.path.join(folder, f"ptx-{module}.ptx")


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


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
