"""The gpu env's documented block: docs/gpu-validation.md's compile-only command, as written,
with this env's xor-gpu on PATH (as a pip user has it). It needs NVIDIA's NVRTC, cuBLAS and
nvcc wheels (the cuda extra), not a GPU."""
import os

import pytest

from docblocks import block, explain, run_block
from xor_gpu.results.compile_only import NOT_EXECUTED

COMPILE_ONLY = block("gpu", "xor-gpu doctor --device cuda --compile-only")


@pytest.mark.cuda_compile
@pytest.mark.parametrize("doc", [COMPILE_ONLY], ids=str)
def test_the_documented_compile_only_command_runs_as_written(doc, tmp_path):
    proc = run_block(doc, tmp_path, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0, explain(doc, proc)
    assert NOT_EXECUTED in proc.stdout and "kernels" in proc.stdout, proc.stdout
