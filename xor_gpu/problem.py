"""The XOR problem itself, at the bottom of the package: the four input rows and their
targets in the seed's order, how a report names a row, and the convergence rule. Plain
Python, importing nothing of the package (xor_gpu/oracle.py keeps a table of its own, on
purpose)."""

# The XOR data set of the seed, rows in the seed's order.
INPUTS = ((1, 0), (0, 0), (0, 1), (1, 1))
TARGETS = (1, 0, 1, 0)

# Converged: every prediction lies on the right side of 0.5 by at least this margin,
# i.e. |prediction - target| <= 0.5 - CONVERGENCE_MARGIN. The seed config ends with its
# worst row at about 0.12 from its target, well inside 0.25.
CONVERGENCE_MARGIN = 0.25


def row_key(row):
    """How reports name an input row: "1,0"."""
    return f"{row[0]},{row[1]}"


ROWS = tuple(row_key(r) for r in INPUTS)


def row_converged(prediction, target):
    """The convergence rule for one row; a run converged when every row did."""
    return abs(prediction - target) <= 0.5 - CONVERGENCE_MARGIN


def is_converged(predictions):
    return all(row_converged(p, t) for p, t in zip(predictions, TARGETS))
