"""`doctor --compile-only`'s child: `python -m xor_gpu.compile_child REPORT`, started by
xor_gpu/compile_only.py with the stand-in driver and cuBLAS first on LD_LIBRARY_PATH. It
compiles the seed graph for cuda and makes one training call, so that libgpuarray writes and
compiles every kernel through its own code path, and answers as every child does
(xor_gpu.child): its CompiledGraph at REPORT, or its error."""
import sys

from xor_gpu import backend, child, cuda_standin, devices, files
from xor_gpu.config import TrainConfig
from xor_gpu.errors import EXIT_OK, XorGpuError
from xor_gpu.model import XorModel
from xor_gpu.results.compile_only import CompiledGraph


def main(report_path):
    cuda_standin.allowed = True  # this process is the one place where the stand-in belongs
    try:
        config = TrainConfig(device=devices.DEFAULT_CUDA, steps=1).resolved()
        theano = backend.import_theano(config.device, config.floatx)
        device = backend.active_context(theano).devname
        model = XorModel(theano, config)
        step = model.steps_function(1)
        ops = backend.verify_graph(step, config.device)
        cudnn = backend.cudnn_of(theano, config.device, ops)
        step()
        model.predict()
    except Exception as exc:  # noqa: BLE001 - the error is the finding, for the parent
        exit_status = getattr(exc, "exit_status", XorGpuError.exit_status)
        child.write_error(exc, exit_status)
        return exit_status
    files.write_json(report_path, CompiledGraph(device=device, ops=ops, cudnn=cudnn).to_dict())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
