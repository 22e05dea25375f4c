"""NVIDIA's GPU architectures and driver versions, as plain data: what `sm_XY` names, which
generation it is, and which CUDA version a driver runs. The CUDA library rule
(xor_gpu/cuda_libs.py) and `doctor --compile-only` speak of GPUs and drivers through this.

An architecture is a compute capability (major, minor); NVRTC and ptxas list theirs as the
integer 10 * major + minor (nvrtcGetSupportedArchs), which `number` and `of_number` convert.
"""
import re

from xor_gpu.errors import ConfigError

# NVIDIA's GPU architectures (compute capability without the dot) and their generations.
GENERATIONS = {50: "Maxwell", 52: "Maxwell", 53: "Maxwell", 60: "Pascal", 61: "Pascal", 62: "Pascal",
               70: "Volta", 72: "Volta", 75: "Turing", 80: "Ampere", 86: "Ampere", 87: "Ampere", 88: None,
               89: "Ada", 90: "Hopper", 100: "Blackwell", 101: "Blackwell", 103: "Blackwell",
               110: "Blackwell", 120: "Blackwell", 121: "Blackwell"}
KNOWN_ARCHS = tuple(GENERATIONS)
# The first CUDA whose NVRTC compiles for an architecture that CUDA 12.0's does not know
# (nvrtcGetSupportedArchs of NVRTC 12.8, 12.9 and 13.0, measured), and the one CUDA 13 dropped
# the architectures below sm_75 in.
FIRST_CUDA = {88: (13, 0), 100: (12, 8), 101: (12, 8), 103: (12, 9), 110: (13, 0), 120: (12, 8), 121: (12, 9)}
DROPPED_BELOW = (75, 13)
# The driver branch -> the CUDA version its cuDriverGetVersion reports (nvidia-smi's "CUDA
# Version"). A driver of a branch runs the NVRTC of that CUDA version and older.
DRIVER_BRANCHES = {525: (12, 0), 530: (12, 1), 535: (12, 2), 545: (12, 3), 550: (12, 4), 555: (12, 5),
                   560: (12, 6), 565: (12, 7), 570: (12, 8), 575: (12, 9), 580: (13, 0), 590: (13, 1)}


def number(cc):
    """(9, 0) -> 90."""
    return cc[0] * 10 + cc[1]


def of_number(arch):
    """90 -> (9, 0); 100 -> (10, 0)."""
    return divmod(arch, 10)


def sm(cc):
    """(7, 0) -> 'sm_70'."""
    return f"sm_{number(cc)}"


def name(cc):
    """(7, 0) -> 'sm_70 (Volta)'."""
    generation = GENERATIONS.get(number(cc))
    return sm(cc) + (f" ({generation})" if generation else "")


def parse_arch(text):
    """'sm_90' -> (9, 0). ConfigError for anything else."""
    match = re.fullmatch(r"sm_(\d{2,3})", text or "")
    if not match or int(match.group(1)) not in KNOWN_ARCHS:
        raise ConfigError(f"--arch {text!r} is not an NVIDIA GPU architecture: expected one of "
                          f"{', '.join(f'sm_{a}' for a in KNOWN_ARCHS)}")
    return of_number(int(match.group(1)))


def parse_driver(text):
    """The CUDA version (major, minor) of a driver given as that version ('13.0', as nvidia-smi
    shows it) or as the driver's own ('580.65.06', '580'). ConfigError for anything else."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.\d+)?", (text or "").strip())
    if match and int(match.group(1)) < 100 and match.group(2) is not None:
        return int(match.group(1)), int(match.group(2))
    if match and int(match.group(1)) in DRIVER_BRANCHES:
        return DRIVER_BRANCHES[int(match.group(1))]
    raise ConfigError(f"--driver {text!r} is neither a CUDA version (e.g. 13.0, as nvidia-smi shows it) nor "
                      f"a driver version of a known branch ({', '.join(map(str, DRIVER_BRANCHES))}, e.g. 580.65.06)")


def text(version):
    """(13, 0) -> '13.0'."""
    return ".".join(map(str, version))
