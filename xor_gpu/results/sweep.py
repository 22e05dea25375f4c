"""`xor-gpu parity --seeds`'s result: the matrix of seeds and runs, and its verdict."""
import dataclasses

from xor_gpu.errors import CheckFailed
from xor_gpu.results.parity import BEYOND_TOLERANCE, Failure, raise_for_failures
from xor_gpu.results.runs import Difference, Tolerances
from xor_gpu.results.schemas import SWEEP_SCHEMA


SWEEP_RUN_FIELDS = ("predictions", "final_loss", "converged", "weights_sha256", "steps_per_second")
SWEEP_GROUPS = ("disagree", "beyond_tolerance", "converged_nowhere", "converged_everywhere")


@dataclasses.dataclass
class Sweep:
    """`xor-gpu parity --seeds`: per seed, each run against the reference run's same seed.
    A seed fails when its runs disagree on convergence, or all converge and differ beyond the
    tolerance; one that converges nowhere is reported, not failed (stalled runs drift apart
    without telling anything about the devices)."""
    config: dict
    devices: list
    seeds: list
    tolerances: Tolerances
    device_names: dict
    runs: dict  # label -> {seed as text -> the run's SWEEP_RUN_FIELDS}
    failures: dict  # label -> Failure
    matrix: dict  # seed as text -> {"converged": {label: bool}, "differences": {label: Difference}}

    @classmethod
    def of_reports(cls, config, devices, seeds, tolerances, sweeps, failures):
        """From each run's `train --seeds` report (sweeps: {label: SeedsReport}); devices[0] is the reference."""
        matrix = {}
        for seed in seeds if not failures else []:
            runs = {d: sweeps[d].runs[str(seed)] for d in devices}
            matrix[str(seed)] = {"converged": {d: r.converged for d, r in runs.items()},
                                 "differences": {d: Difference.between(runs[devices[0]], runs[d])
                                                 for d in devices[1:]}}
        return cls(config, devices, seeds, tolerances,
                   {d: s.runs[str(seeds[0])].device.name for d, s in sweeps.items()},
                   {d: {k: {f: getattr(r, f) for f in SWEEP_RUN_FIELDS} for k, r in s.runs.items()}
                    for d, s in sweeps.items()}, failures, matrix)

    @property
    def reference(self):
        return self.devices[0]

    def groups(self):
        groups = {g: [] for g in SWEEP_GROUPS}
        for seed in self.seeds if self.matrix else []:
            row = self.matrix[str(seed)]
            converged = set(row["converged"].values())
            if len(converged) > 1:
                groups["disagree"].append(seed)
            elif converged == {False}:
                groups["converged_nowhere"].append(seed)
            else:
                groups["converged_everywhere"].append(seed)
                if not all(self.tolerances.admit(d) for d in row["differences"].values()):
                    groups["beyond_tolerance"].append(seed)
        return groups

    @property
    def passed(self):
        groups = self.groups()
        return not self.failures and not groups["disagree"] and not groups["beyond_tolerance"]

    def differences(self):
        return [d for row in self.matrix.values() for d in row["differences"].values()]

    def verdict(self):
        raise_for_failures(self.failures)
        groups = self.groups()
        problems = [f"{what} on seed{'s' if len(seeds) > 1 else ''} {_seed_list(seeds)}"
                    for what, seeds in (("devices disagree on convergence", groups["disagree"]),
                                        (BEYOND_TOLERANCE, groups["beyond_tolerance"]))
                    if seeds]
        if problems:
            raise CheckFailed(f"parity failed: {'; '.join(problems)}")

    def to_dict(self):
        return {"schema": SWEEP_SCHEMA, "config": self.config, "devices": self.devices,
                "reference": self.reference, "seeds": self.seeds, "tolerances": self.tolerances.to_dict(),
                "device_names": self.device_names, "runs": self.runs,
                "failures": {k: f.to_dict() for k, f in self.failures.items()},
                "matrix": {s: {"converged": row["converged"],
                               "differences": {d: v.to_dict() for d, v in row["differences"].items()}}
                           for s, row in self.matrix.items()},
                **self.groups(), "passed": self.passed}

    @classmethod
    def from_dict(cls, data):
        matrix = {s: {"converged": row["converged"],
                      "differences": {d: Difference.from_dict(v) for d, v in row["differences"].items()}}
                  for s, row in data["matrix"].items()}
        return cls(data["config"], data["devices"], data["seeds"], Tolerances.from_dict(data["tolerances"]),
                   data["device_names"], data["runs"], {k: Failure(**f) for k, f in data["failures"].items()},
                   matrix)


def _seed_list(seeds, most=10):
    text = ",".join(map(str, seeds[:most]))
    return text + (f" and {len(seeds) - most} more" if len(seeds) > most else "")
