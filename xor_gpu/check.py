"""`xor-gpu check`: the whole proof on one machine, in one command, for pip installs, the
image, CI and the offline bundle alike.

Steps: doctor (what is installed), train (the seed config on DEV, converged), determinism
(a second independent run on DEV ends with bitwise-identical weights), parity (the CPU
against DEV within the tolerances), reference (each run against the committed reference).
Every training runs in its own process (xor_gpu.child). OUT gets summary.json (schema
xor_gpu.check/1) beside the train and parity reports and plots; a failed step never stops
the summary from being written.
"""
import os
import sys
import time

from xor_gpu import child, compare, doctor, engines, parity, report
from xor_gpu.config import TrainConfig
from xor_gpu.errors import EXIT_OK, CheckFailed, ConfigError, DeviceError

SUMMARY_SCHEMA = compare.CHECK_SCHEMA
STEPS = ("doctor", "train", "determinism", "parity", "reference")
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


class Log:
    """Progress lines on stderr (a terminal or a CI log alike), all of it also in OUT/check.log."""

    def __init__(self, path):
        self.path, self.lines = path, []

    def __call__(self, text, detail=""):
        stamp = time.strftime("%H:%M:%S")
        print(f"[check {stamp}] {text}", file=sys.stderr, flush=True)
        self.lines.append(f"[{stamp}] {text}")
        if detail.strip():
            self.lines.append(detail.rstrip())

    def save(self):
        report._atomic(self.path, lambda f: f.write("\n".join(self.lines) + "\n"))


def prepare_out(out):
    """Create OUT (and its parents) or refuse, before anything runs."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"cannot write to {out}: it is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {out}: not writable")
    return os.path.abspath(out)


def load_reference(config, reference):
    """(label, run, applies). A reference that was asked for by name must match the config;
    the builtin one is skipped (not failed) for a config it was not made with, e.g. --steps."""
    path = compare.builtin_reference_path() if reference == compare.BUILTIN else reference
    runs = compare.runs_of(path)
    if len(runs) != 1:
        raise ConfigError(f"{reference}: a reference must hold one training run, it holds {len(runs)}")
    label, run = runs[0]
    field = compare.config_mismatch({"config": config.to_dict()}, run)
    if field and reference != compare.BUILTIN:
        raise ConfigError(f"{reference}: the reference was made with {field}={run['config'][field]!r}, "
                          f"this check runs {field}={getattr(config, field)!r}")
    return (compare.BUILTIN if reference == compare.BUILTIN else label), run, field is None


class Check:
    def __init__(self, config, out, reference, atol, rtol):
        self.config, self.out, self.atol, self.rtol = config, out, atol, rtol
        self.ref_label, self.ref, self.ref_applies = reference
        self.log = Log(os.path.join(out, "check.log"))
        self.steps, self.runs, self.failure = [], {}, None  # failure: the error to raise at the end
        self.plots = report.can_plot()  # without matplotlib the check still runs, without PNGs

    def step(self, name, status, seconds, summary, **figures):
        seconds = round(seconds, 2)
        self.steps.append({"name": name, "status": status, "seconds": seconds, "summary": summary, **figures})
        number = STEPS.index(name) + 1
        self.log(f"[{number}/{len(STEPS)}] {name:<12} {status.upper():<8} {summary} ({seconds:.1f} s)")
        if status == FAILED and self.failure is None:
            self.failure = CheckFailed(f"check failed at {name}: {summary}")

    def skip_rest(self, reason):
        for name in STEPS[len(self.steps):]:
            self.step(name, SKIPPED, 0, reason)

    def train(self, device, what):
        self.log(f"training {what} on {device} ({self.config.steps:,} steps) ...")
        run = child.train(self.config.replace(device=device))
        self.log(f"{what} on {device}: exit {run.exit_status} after {run.seconds:.1f} s", run.stderr)
        return run

    def run(self):
        device = self.config.device
        started = time.perf_counter()
        findings = doctor.collect()
        report.write_json(os.path.join(self.out, "doctor.json"), findings)
        doctor_seconds = time.perf_counter() - started
        # The doctor's advice is about Theano's stack (pygpu, NVIDIA libraries for libgpuarray).
        theano = engines.get(self.config.engine).libgpuarray
        problems = [f"{p} (fix: {fix})" for p, fix in
                    doctor.advice({**findings, "device": {"name": device, "error": None}})] if theano else []

        first = self.train(device, "the seed config")
        if first.exit_status == DeviceError.exit_status:
            self.step("doctor", FAILED, doctor_seconds, f"device {device} is not usable: {first.error}", problems=problems)
            self.failure = DeviceError(f"device {device} is not usable: {first.error}")
            return self.skip_rest(f"device {device} is not usable")
        self.step("doctor", PASSED, doctor_seconds, f"{device} usable" + (f"; notes: {'; '.join(problems)}" if problems else ""),
                  problems=problems)

        if not first.ok:
            self.step("train", FAILED, first.seconds, first.error, exit_status=first.exit_status)
            return self.skip_rest("training failed")
        r = first.report
        self.runs[device] = r
        report.write_json(os.path.join(self.out, "train.json"), r)
        self.step("train", PASSED if r["converged"] else FAILED, first.seconds,
                  f"{'converged' if r['converged'] else 'did NOT converge'}, final loss {r['final_loss']:.6g}, "
                  f"{r['steps_per_second']:,.0f} steps/s on {r['device']['name']}",
                  converged=r["converged"], final_loss=r["final_loss"], steps_per_second=r["steps_per_second"],
                  weights_sha256=r["weights_sha256"])

        second = self.train(device, "an independent repeat")
        if not second.ok:
            self.step("determinism", FAILED, second.seconds, f"the repeat failed: {second.error}")
        else:
            same = second.report["weights_sha256"] == r["weights_sha256"]
            diff = compare.differences(r, second.report)
            self.step("determinism", PASSED if same else FAILED, second.seconds,
                      "two runs ended with bitwise-identical weights" if same else
                      f"two runs differ: max |prediction diff| {diff['max_abs_prediction_diff']:.3g}",
                      bitwise_equal=same, weights_sha256=[r["weights_sha256"], second.report["weights_sha256"]])

        self.parity(device, r)
        self.reference()

    def parity(self, device, dev_report):
        started = time.perf_counter()
        if device == "cpu":
            return self.step("parity", SKIPPED, 0, "the device is the CPU, the reference device itself")
        cpu = self.train("cpu", "the CPU reference")
        reports, failures = {}, {}
        if cpu.ok:
            reports["cpu"] = self.runs["cpu"] = cpu.report
        else:
            failures["cpu"] = {"exit_status": cpu.exit_status, "error": cpu.error}
        reports[device] = dev_report
        data = parity.assess(self.config, ["cpu", device], reports, failures, self.atol, self.rtol)
        report.write_json(os.path.join(self.out, "parity.json"), data)
        if not failures:
            if self.plots:
                parity.plot(os.path.join(self.out, "parity.png"), data)
            diff = data["differences"][device]
            self.step("parity", PASSED if data["passed"] else FAILED, time.perf_counter() - started,
                      f"{device} vs cpu: max |prediction diff| {diff['max_abs_prediction_diff']:.3g} "
                      f"(tolerance {self.atol:g}), max relative loss diff {diff['max_rel_loss_diff']:.3g} "
                      f"(tolerance {self.rtol:g}){', bitwise equal' if diff['bitwise_equal'] else ''}", **diff)
        else:
            self.step("parity", FAILED, time.perf_counter() - started, f"the CPU run failed: {cpu.error}")

    def reference(self):
        started = time.perf_counter()
        if not self.ref_applies:
            return self.step("reference", SKIPPED, 0,
                             "the committed reference is for the seed config; this check runs another")
        diffs = {name: compare.differences(self.ref, run) for name, run in self.runs.items()}
        ok = all(compare.within(d, self.atol, self.rtol) for d in diffs.values())
        text = "; ".join(f"{name}: max |prediction diff| {d['max_abs_prediction_diff']:.3g}, max relative loss diff "
                         f"{d['max_rel_loss_diff']:.3g}{', weights bitwise equal' if d['bitwise_equal'] else ''}"
                         for name, d in diffs.items())
        if self.plots:
            from xor_gpu import plots

            plots.plot_runs(os.path.join(self.out, "check.png"), self.runs,
                            f"{self.config.device} check against the reference", reference=(self.ref_label, self.ref),
                            atol=self.atol, rtol=self.rtol)
        self.step("reference", PASSED if ok else FAILED, time.perf_counter() - started, text or "no run to compare", differences=diffs)

    def summary(self):
        dev = self.runs.get(self.config.device) or {}
        data = {
            "schema": SUMMARY_SCHEMA,
            "passed": self.failure is None and all(s["status"] != FAILED for s in self.steps),
            "exit_status": self.failure.exit_status if self.failure else EXIT_OK,
            "config": self.config.to_dict(),
            "device": {"requested": self.config.device, **({k: dev["device"][k] for k in ("active", "name")} if dev else {})},
            "steps": self.steps,
            "tolerances": {"atol_predictions": self.atol, "rtol_loss_history": self.rtol},
            "reference": {"label": self.ref_label, "weights_sha256": self.ref["weights_sha256"],
                          "origin": self.ref.get("origin"), "applies": self.ref_applies},
            "versions": dev.get("versions") or {},
            "origin": report.origin(),
            "runs": self.runs,
        }
        if self.config.device.startswith("cuda"):
            from xor_gpu import cuda_libs

            data["cuda"] = cuda_libs.describe()
        return data


def main(config, out, reference=compare.BUILTIN, atol=compare.DEFAULT_ATOL, rtol=compare.DEFAULT_RTOL):
    compare.check_tolerances(atol, rtol)
    ref = load_reference(config, reference)
    engines.python_for(config.engine)  # a missing engine environment: exit 3, nothing written
    out = prepare_out(out)
    check = Check(config, out, ref, atol, rtol)
    check.log(f"xor-gpu check: engine {config.engine}, device {config.device}, results in {out}")
    try:
        check.run()
    finally:
        data = check.summary()
        report.write_json(os.path.join(out, "summary.json"), data)
        check.log(f"RESULT: {'PASS' if data['passed'] else 'FAIL'}; summary in {os.path.join(out, 'summary.json')}")
        check.log.save()
    if check.failure:
        raise check.failure
    return EXIT_OK
