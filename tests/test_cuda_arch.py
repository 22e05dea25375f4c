"""NVIDIA's architectures and driver versions as data (xor_gpu/cuda_arch.py): what `--arch` and
`--driver` accept, and how they are named in notes and reports."""
import pytest

from xor_gpu import cuda_arch
from xor_gpu.errors import ConfigError


@pytest.mark.parametrize("text, cc", [("sm_70", (7, 0)), ("sm_90", (9, 0)), ("sm_100", (10, 0)), ("sm_121", (12, 1))])
def test_an_architecture_is_read(text, cc):
    assert cuda_arch.parse_arch(text) == cc and cuda_arch.sm(cc) == text


@pytest.mark.parametrize("cc, name", [((7, 0), "sm_70 (Volta)"), ((9, 0), "sm_90 (Hopper)"),
                                      ((10, 3), "sm_103 (Blackwell)"), ((8, 8), "sm_88")])
def test_an_architecture_is_named_with_its_generation_where_known(cc, name):
    assert cuda_arch.name(cc) == name


@pytest.mark.parametrize("text, cuda", [
    ("13.0", (13, 0)), ("12.4", (12, 4)),  # the CUDA version, as nvidia-smi shows it
    ("580.65.06", (13, 0)), ("580", (13, 0)), ("575.51.03", (12, 9)), ("570.124.06", (12, 8)),
    ("550.54.14", (12, 4)), ("535.247.01", (12, 2)),  # the driver's own version: its branch's CUDA
])
def test_a_driver_is_read_as_the_cuda_version_it_runs(text, cuda):
    assert cuda_arch.parse_driver(text) == cuda


@pytest.mark.parametrize("text", ["", "13", "600.1", "580,65", "cuda13", "13.0.0.0"])
def test_anything_else_is_not_a_driver(text):
    with pytest.raises(ConfigError, match="is neither a CUDA version"):
        cuda_arch.parse_driver(text)
