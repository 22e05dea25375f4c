"""`xor-gpu parity --seeds`'s result: the matrix of seeds and runs, and its verdict."""
import dataclasses

from xor_gpu.errors import CheckFailed
from xor_gpu.results.parity import BEYOND_TOLERANCE, Failure, raise_for_failures
from xor_gpu.results.runs import Difference, Tolerances
from xor_gpu.results import SWEEP_SCHEMA


SWEEP_RUN_FIELDS = ("predictions", "final_loss", "converged", "weights_sha256", "steps_per_second")
SWEEP_GROUPS = ("disagree", "beyond_tolerance", "converged_nowhere", "converged_everywhere")


@dataclasses.dataclass(frozen=True)
class SeedRow:
    """One seed of a sweep: where it converged, and each run against the reference run's."""
    seed: int
    converged: dict  # label -> bool, every run's
    differences: dict  # label -> Difference, every run's but the reference's

    @property
    def kind(self):
        """Where it converged: "converged_everywhere", "converged_nowhere" or "disagree"."""
        converged = set(self.converged.values())
        if len(converged) > 1:
            return "disagree"
        return "converged_nowhere" if converged == {False} else "converged_everywhere"

    def within(self, tolerances):
        return all(tolerances.admit(d) for d in self.differences.values())


@dataclasses.dataclass
class Sweep:
    """`xor-gpu parity --seeds`: per seed, each run against the reference run's same seed.
    A seed fails when its runs disagree on convergence, or all converge and differ beyond the
    tolerance; one that converges nowhere is reported, not failed (stalled runs drift apart
    without telling anything about the devices). Its rows (a SeedRow per seed, none when a
    run failed) are what its text, its plot and its verdict read."""
    config: dict
    devices: list
    seeds: list
    tolerances: Tolerances
    device_names: dict
    runs: dict  # label -> {seed as text -> the run's SWEEP_RUN_FIELDS}
    failures: dict  # label -> Failure
    rows: list  # SeedRow, in the order of seeds

    @classmethod
    def of_reports(cls, config, devices, seeds, tolerances, sweeps, failures):
        """From each run's `train --seeds` report (sweeps: {label: SeedsReport}); devices[0] is the reference."""
        rows = []
        for seed in seeds if not failures else []:
            runs = {d: sweeps[d].runs[str(seed)] for d in devices}
            rows.append(SeedRow(seed, {d: r.converged for d, r in runs.items()},
                                {d: Difference.between(runs[devices[0]], runs[d]) for d in devices[1:]}))
        return cls(config, devices, seeds, tolerances,
                   {d: s.runs[str(seeds[0])].device.name for d, s in sweeps.items()},
                   {d: {k: {f: getattr(r, f) for f in SWEEP_RUN_FIELDS} for k, r in s.runs.items()}
                    for d, s in sweeps.items()}, failures, rows)

    @property
    def reference(self):
        return self.devices[0]

    def groups(self):
        """{group: [seed]} for each of SWEEP_GROUPS ("beyond_tolerance": converged everywhere, and
        a run beyond the tolerance)."""
        groups = {g: [] for g in SWEEP_GROUPS}
        for row in self.rows:
            groups[row.kind].append(row.seed)
            if row.kind == "converged_everywhere" and not row.within(self.tolerances):
                groups["beyond_tolerance"].append(row.seed)
        return groups

    def converged_counts(self):
        """{label: how many seeds converged} of each run that finished."""
        return {label: sum(r["converged"] for r in runs.values()) for label, runs in self.runs.items()}

    @property
    def passed(self):
        groups = self.groups()
        return not self.failures and not groups["disagree"] and not groups["beyond_tolerance"]

    def differences(self):
        return [d for row in self.rows for d in row.differences.values()]

    def worst(self):
        """The largest prediction and loss differences over every run of every seed (None
        when there is none); not one run's, so never bitwise equal."""
        diffs = self.differences()
        if not diffs:
            return None
        return Difference(max(d.max_abs_prediction_diff for d in diffs), max(d.max_rel_loss_diff for d in diffs),
                          False)

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
                "matrix": {str(row.seed): {"converged": row.converged,
                                           "differences": {d: v.to_dict() for d, v in row.differences.items()}}
                           for row in self.rows},
                **self.groups(), "passed": self.passed}

    @classmethod
    def from_dict(cls, data):
        rows = [SeedRow(int(s), row["converged"], {d: Difference.from_dict(v) for d, v in row["differences"].items()})
                for s, row in data["matrix"].items()]
        return cls(data["config"], data["devices"], data["seeds"], Tolerances.from_dict(data["tolerances"]),
                   data["device_names"], data["runs"], {k: Failure(**f) for k, f in data["failures"].items()},
                   rows)


def _seed_list(seeds, most=10):
    text = ",".join(map(str, seeds[:most]))
    return text + (f" and {len(seeds) - most} more" if len(seeds) > most else "")
