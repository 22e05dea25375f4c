"""Devices: the one place a device's name is read. A name is checked before anything binds
one: cpu; cuda or cudaN (an NVIDIA GPU, through libgpuarray or JAX); openclP:D (OpenCL
platform P, device D). Everything else asks the Device value what the name means (its kind,
whether it is a GPU of its own); which engine runs on which device is the engine registry's
(xor_gpu/engines.py)."""
import dataclasses
import functools
import re

from xor_gpu.errors import ConfigError

CPU, CUDA, OPENCL = "cpu", "cuda", "opencl"  # the kinds of device
DEVICE_PATTERN = re.compile(r"(?P<kind>cpu)|(?P<cuda>cuda)(?P<index>\d*)|opencl(?P<platform>\d+):(?P<device>\d+)")


@dataclasses.dataclass(frozen=True)
class Device:
    name: str  # as given, e.g. "cuda1" or "opencl0:0": how reports and flags name it
    kind: str  # CPU, CUDA or OPENCL
    index: int = None  # cudaN's N (None: the default GPU), openclP:D's D
    platform: int = None  # openclP:D's P

    @property
    def is_cpu(self):
        return self.kind == CPU

    @property
    def is_cuda(self):
        return self.kind == CUDA

    @property
    def is_opencl(self):
        return self.kind == OPENCL

    @property
    def own_hardware(self):
        """Whether it computes on hardware of its own, beside the CPU's cores: a CUDA GPU.
        OpenCL devices are taken to be the CPU's (PoCL), as the machines this runs on have
        them: a run there and a CPU run at once would share the cores."""
        return self.is_cuda

    def steps_per_call(self, chain_steps):
        """A chain's steps per call here unless given: `chain_steps` on the CPU; 1 on a GPU,
        where every step of a call builds kernels of its own and the device's calls, not
        Python, bound the speed (xor_gpu/engines.py has the figures)."""
        return chain_steps if self.is_cpu else 1

    def __str__(self):
        return self.name


@functools.lru_cache(maxsize=None)
def _parse(name):
    match = DEVICE_PATTERN.fullmatch(name)
    if not match:
        return None
    if match["kind"]:
        return Device(name, CPU)
    if match["cuda"]:
        return Device(name, CUDA, int(match["index"]) if match["index"] else None)
    return Device(name, OPENCL, int(match["device"]), int(match["platform"]))


def device(name):
    """The Device a name means; ConfigError (one line) for a name that is none."""
    found = _parse(name) if isinstance(name, str) else None
    if found is None:
        raise ConfigError(
            f"unknown device {name!r}: use cpu, cuda, cudaN (e.g. cuda0) or openclP:D (e.g. opencl0:0)"
        )
    return found


def check_device(name):
    """The name, once it is known to be a device's."""
    return device(name).name


def own_hardware(name):
    return device(name).own_hardware
