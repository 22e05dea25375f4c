"""The XOR problem at the bottom of the package: its rows, and the convergence rule at its
boundary."""
import subprocess
import sys

import pytest

from xor_gpu import problem


@pytest.mark.parametrize("prediction, target, converged", [
    (0.75, 1, True), (0.7499, 1, False), (0.25, 0, True), (0.2501, 0, False), (1.0, 1, True), (0.5, 0, False)])
def test_the_convergence_rule_at_its_boundary(prediction, target, converged):
    """Converged: within 0.25 of the target (`|prediction - target| <= 0.25`), no further."""
    assert problem.row_converged(prediction, target) is converged


def test_a_run_converged_when_every_row_did():
    assert problem.is_converged([0.75, 0.25, 0.75, 0.25]) is True
    assert problem.is_converged([0.75, 0.2501, 0.7499, 0.25]) is False


def test_reports_name_the_rows_in_the_seeds_order():
    assert problem.ROWS == ("1,0", "0,0", "0,1", "1,1")
    assert [a ^ b for a, b in problem.INPUTS] == list(problem.TARGETS)  # XOR, row by row


def test_it_imports_nothing_of_the_package():
    """At the bottom of the import graph: what imports it gets no other module of xor_gpu."""
    code = "import sys, xor_gpu.problem; print(sorted(m for m in sys.modules if m.startswith('xor_gpu')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['xor_gpu', 'xor_gpu.problem']"
