"""What every command produces, typed, and the one place that knows every report schema:

- schemas: the schema names, and reading a report file (one line for anything not ours)
- runs: a training run, its difference to a reference, the tolerances
- parity, sweep, check: the results of `parity`, `parity --seeds` and `check`
- fleet: `compare`'s rows and nodes, and how alike ones are grouped

Each module is imported by name (from xor_gpu.results.runs import Difference); the package
itself imports none of them, and they import nothing of xor_gpu beyond errors, problem and
devices: no engine, no backend.
"""
