"""`doctor --compile-only`'s report (schema xor_gpu.compile-only/1), typed, and what its child
answers: every kernel compiled and assembled for one architecture, nothing executed. It is not
a run: compare and check refuse it as evidence (its schema is none of theirs)."""
import dataclasses

from xor_gpu.results.doctor import Library
from xor_gpu.results import COMPILE_ONLY_SCHEMA, JsonObject, named, optional
from xor_gpu.results.train_report import Cudnn, NvrtcArch

SCHEMA = COMPILE_ONLY_SCHEMA
GRAPH_SCHEMA = "xor_gpu.compile-only-graph/1"  # what the compiling child answers
NOT_EXECUTED = ("Nothing was executed: kernels were compiled and assembled only, no kernel ran on a GPU "
                "and no number was checked. This report is not evidence that training works.")


@dataclasses.dataclass
class CompiledGraph(JsonObject):
    """The compiling child's answer: the device libgpuarray opened on the stand-in driver, the
    compiled graph's ops, and what it did with cuDNN (as a run would)."""
    schema: str = GRAPH_SCHEMA
    device: str = None
    ops: list = None
    cudnn: Cudnn = None


@dataclasses.dataclass
class TargetDriver(JsonObject):
    """The driver of the nodes the kernels are for: its CUDA version (None: unknown), and where
    that came from (--driver, this machine's, or unknown and why)."""
    cuda: str = None
    from_: str = named("from")


@dataclasses.dataclass
class CublasNames(JsonObject):
    """The cuBLAS functions libgpuarray 0.7.6 looks up, as the real cuBLAS has them."""
    resolved: list = None
    missing: list = None
    missing_optional: list = None


@dataclasses.dataclass
class CublasCheck(JsonObject):
    path: str = None
    version: str = None
    names: CublasNames = None
    calls: list = None  # what the training call asked of the stand-in cuBLAS


@dataclasses.dataclass
class Kernel(JsonObject):
    """One kernel libgpuarray compiled: its module's PTX, and once assembled ptxas's figures."""
    name: str = None
    module: int = None
    ptx_bytes: int = None
    ptx_sha256: str = None  # absent from reports older than it
    target: str = None
    stack_bytes: int = optional()
    spill_stores: int = optional()
    spill_loads: int = optional()
    registers: int = optional()

    @property
    def assembled(self):
        return self.registers is not None


@dataclasses.dataclass
class Ptxas(JsonObject):
    """The ptxas that assembled the PTX (path None: none as new as the NVRTC), the ones skipped."""
    path: str = None
    version: str = None
    skipped: list = None  # absent from reports older than it
    note: str = optional()  # why none assembled


@dataclasses.dataclass
class CompileOnly(JsonObject):
    """`doctor --device cuda --compile-only`'s report, in its JSON order."""
    schema: str = SCHEMA
    executed: bool = False
    note: str = NOT_EXECUTED
    arch: str = None  # sm_XY
    compute_capability: str = None
    driver: TargetDriver = None  # absent from reports older than --driver
    device: str = None
    libgpuarray_arch: str = None  # what libgpuarray asked NVRTC for
    nvrtc_arch: NvrtcArch = None  # what xor_gpu's NVRTC front gave it instead; absent from older reports
    nvrtc_options: list = None
    nvrtc: Library = None
    cublas: CublasCheck = None
    cuda_libs_notes: list = None
    ops: list = None
    cudnn: Cudnn = None  # absent from reports older than it
    kernels: list[Kernel] = None
    launches_recorded: dict = None  # kernel name -> launches the stand-in saw
    ptxas: Ptxas = None  # None: no ptxas runs here
    problems: list = None
