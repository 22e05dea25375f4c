"""Devices: the one place a device's name is read. A name is read once, where it enters (the
command line, a TrainConfig, a report's field), before anything binds one: cpu; cuda or cudaN
(an NVIDIA GPU, through libgpuarray or JAX); openclP:D (OpenCL platform P, device D). The
Device value travels from there, and everything else asks it what the name means (its kind,
whether it is a GPU of its own, whether a name Theano or JAX reports is this device): no
device is compared, as a string or a value, outside this module. Which engine runs on which
device is the engine registry's (xor_gpu/engines.py)."""
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

    def of_kinds(self, kinds):
        """Whether its kind is one of `kinds` (CPU, CUDA, OPENCL): where an engine runs."""
        return self.kind in kinds

    def is_named(self, name):
        """Whether the device name `name` (Theano's config.device, say) means this device."""
        return _parse(name) == self if isinstance(name, str) else False

    def has_context_kind(self, kind):
        """Whether pygpu's context kind (b"cuda", b"opencl") is this device's."""
        return (kind.decode() if isinstance(kind, bytes) else kind) == self.kind

    @property
    def jax_platform(self):
        """JAX's name of the platform it is on: "cpu", or "gpu" for a CUDA device."""
        return "cpu" if self.is_cpu else "gpu"

    def is_jax_platform(self, platform):
        return platform == self.jax_platform

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
    """The Device a name means (a Device is itself); ConfigError (one line) for a name that is none."""
    if isinstance(name, Device):
        return name
    found = _parse(name) if isinstance(name, str) else None
    if found is None:
        raise ConfigError(
            f"unknown device {name!r}: use cpu, cuda, cudaN (e.g. cuda0) or openclP:D (e.g. opencl0:0)"
        )
    return found


THE_CPU = device("cpu")  # the reference device of parity and check
DEFAULT_CUDA = device("cuda")  # the default NVIDIA GPU: what doctor shows a cuda run would load
