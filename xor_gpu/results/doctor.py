"""`xor-gpu doctor`'s findings (doctor.json), typed, and the advice they give: each problem
found, with the line that fixes it. The NVIDIA libraries libgpuarray gets (CudaLibs, made by
xor_gpu/cuda_libs.py) are a record of their own: doctor shows them, a cuda check's summary
keeps them."""
import dataclasses

from xor_gpu.devices import device as device_of
from xor_gpu.results import JsonObject, optional
from xor_gpu.results.train_report import Blas, Cudnn

# The shared libraries libgpuarray dlopens by these exact names, and how to get each.
OPENCL_LIBS = ("libOpenCL.so", "libclblast.so")
LOADED_BY_LIBGPUARRAY = {
    "libOpenCL.so": "apt-get install ocl-icd-libopencl1 ocl-icd-opencl-dev pocl-opencl-icd",
    "libclblast.so": "apt-get install libclblast-dev (OpenCL BLAS; libclblast1 alone lacks this name)",
    "libcuda.so": "install the NVIDIA driver (in Docker: the NVIDIA container toolkit and --gpus all)",
    "libnvrtc.so": "pip install 'xor_gpu[cuda]' or set XOR_GPU_CUDA_LIBS (see README, CUDA libraries)",
    "libcublas.so": "pip install 'xor_gpu[cuda]' or set XOR_GPU_CUDA_LIBS (see README, CUDA libraries)",
}
LOADS = "ok"  # a library of LOADED_BY_LIBGPUARRAY that loads; otherwise the loader's error


@dataclasses.dataclass
class Library(JsonObject):
    """An NVIDIA library chosen: its file and its version ("12.4", "13.1.0")."""
    path: str = None
    version: str = None


@dataclasses.dataclass
class CudaLibs(JsonObject):
    """The NVIDIA libraries libgpuarray gets here (xor_gpu/cuda_libs.py's choice): the driver and
    the GPUs chosen for, NVRTC and cuBLAS, the folder of links (whether its libnvrtc.so is the
    NVRTC front), what was searched, why others were skipped, and when nothing usable was found
    the problem and its fix. A check of an engine that brings its own (JAX) keeps only the driver."""
    driver: str = None  # its CUDA version
    libcuda: str = None
    gpus: list = None  # absent from records older than it
    nvrtc: Library = None
    cublas: Library = None
    folder: str = None
    nvrtc_front: bool = None  # absent from records older than it
    searched: list = None
    notes: list = None
    problem: str = None
    fix: str = None

    def driver_only(self):
        """This record as a check of an engine with its own NVIDIA libraries keeps it."""
        kept = ("driver", "libcuda")
        return dataclasses.replace(self, absent=frozenset(f.name for f in self.json_fields() if f.name not in kept))


@dataclasses.dataclass
class DeviceProbe(JsonObject):
    """`doctor --device DEV`: whether a one-step training on it worked (error None) or its error."""
    name: str = None
    error: str = None


@dataclasses.dataclass
class Problem:
    what: str
    fix: str


@dataclasses.dataclass
class Findings(JsonObject):
    """What `xor-gpu doctor` found, in doctor.json's order. pygpu_error, manifest and device are
    left out where there is none (pygpu imported; not in the image or the bundle; no --device)."""
    python: str = None
    numpy: str = None
    theano: str = None
    xor_gpu: str = None
    cpu: str = None
    blas: Blas = None  # what the C engines link (xor_gpu.host)
    pygpu: str = None  # None: it does not import
    pygpu_error: str = optional()
    opencl_devices: list = None  # "PLATFORM: DEVICE"
    cuda_driver: str = None  # its CUDA version
    cuda_gpus: list = None
    cuda_libs: CudaLibs = None  # what the launcher put on LD_LIBRARY_PATH, and why
    cudnn: Cudnn = None  # what Theano would find, and whether runs use it; absent from older findings
    libraries: dict = None  # name of LOADED_BY_LIBGPUARRAY -> LOADS or the loader's error
    ld_library_path: str = None
    compiledir: str = None
    pocl_cache_dir: str = None
    manifest: dict = optional()  # the image's or the bundle's (xor_gpu.origin)
    device: DeviceProbe = optional()

    def advice(self, wanted=None):
        """[Problem] for what is wrong, for the device `wanted` (a Device; default: the one
        probed, else every family of device)."""
        if wanted is None and self.device:
            wanted = device_of(self.device.name)
        cuda = not wanted or wanted.is_cuda
        opencl = not wanted or wanted.is_opencl
        out = []
        if self.pygpu is None and not (wanted and wanted.is_cpu):
            out.append(Problem(f"pygpu does not import: {self.pygpu_error}",
                               "apt-get install python3-pygpu libgpuarray-dev, then: xor-gpu link-pygpu"))
        if self.blas.problem:
            out.append(Problem(*self.blas.problem))
        chosen = self.cuda_libs
        if cuda and chosen.problem:
            out.append(Problem(chosen.problem, chosen.fix))
        for name, status in self.libraries.items():
            if chosen.problem and name not in OPENCL_LIBS:
                continue  # no folder of links was made: the problem above says why
            if status != LOADS and (opencl if name in OPENCL_LIBS else cuda):
                out.append(Problem(f"{name} does not load", LOADED_BY_LIBGPUARRAY[name]))
        if opencl and not self.opencl_devices:
            out.append(Problem("no OpenCL device", "apt-get install pocl-opencl-icd (OpenCL on the CPU)"))
        if cuda and self.cuda_driver is None:
            out.append(Problem("no NVIDIA driver (libcuda.so.1)", "cuda devices need an NVIDIA GPU and its driver"))
        elif cuda and not self.cuda_gpus:
            out.append(Problem(f"NVIDIA driver {self.cuda_driver} sees no GPU", "check nvidia-smi; in Docker: --gpus all"))
        if self.device and self.device.error:
            out.append(Problem(f"device {self.device.name} does not train: {self.device.error}",
                               "fix the problems above; README: Troubleshooting"))
        return out
