"""What every command produces, typed, and the one place that knows every report schema:

- schemas: the schema names, reading a report file (one line for anything not ours), JSON
  objects as dataclasses that keep what other releases wrote
- train_report: the train report and `train --seeds`' report, read by attribute
- runs: a training run, its difference to a reference, the tolerances
- parity, sweep, check: the results of `parity`, `parity --seeds` and `check`
- fleet: `compare` reading each report as a node and its runs; rows, nodes, alike ones grouped

Each module is imported by name (from xor_gpu.results.runs import Difference); the package
itself imports none of them, and they import nothing of xor_gpu beyond errors, problem and
devices: no engine, no backend.
"""
