"""`xor-gpu check`: the whole proof on one machine, in one command, for pip installs, the
image, CI and the offline bundle alike.

Steps: doctor (what is installed), train (the seed config on DEV, converged), determinism
(a second independent run on DEV ends with bitwise-identical weights), parity (the CPU
against DEV within the tolerances), reference (each run against the committed reference).
Every training runs in its own process (xor_gpu.child). OUT gets summary.json (schema
xor_gpu.check/1, xor_gpu.results.check.CheckSummary) beside the train and parity reports and
plots; a failed step, or SIGTERM/SIGINT, never stops the summary from being written.

On a device with hardware of its own (a CUDA GPU) the CPU reference trains beside the
device's two runs, so that the check takes about their time; on the CPU's own cores (the
CPU, and PoCL's OpenCL) the three run one after the other. Each step records when it
started: the steps' seconds add up to the wall time plus the overlap, both in the summary.
"""
import contextlib
import functools
import os
import signal
import sys
import time

from xor_gpu import (child, compare, cuda_libs, doctor, engines, engine_python, files, origin, parity, pipeline,
                     plots, render)
from xor_gpu.devices import THE_CPU
from xor_gpu.errors import EXIT_OK, CheckFailed, ConfigError, DeviceError, Interrupted, XorGpuError, exit_words
from xor_gpu.results.check import (FAILED, INTERRUPTED, PASSED, SKIPPED, UNUSABLE, CheckSummary, ReferenceUsed, Step,
                                   log_header)
from xor_gpu.results.train_report import RunDevice
from xor_gpu.results.parity import Failure
from xor_gpu.results.runs import Difference, Tolerances

STEPS = ("doctor", "train", "determinism", "parity", "reference")


class Log:
    """Progress lines on stderr (a terminal or a CI log alike), all of it also in OUT/check.log,
    written again after each line: a check killed before its summary leaves its log so far."""

    def __init__(self, path):
        self.path, self.lines = path, []

    def __call__(self, text, detail=""):
        stamp = time.strftime("%H:%M:%S")
        self.lines.append(f"[{stamp}] {text}")
        if detail.strip():
            self.lines.append(detail.rstrip())
        self.save()  # first: what was said is in the file
        print(f"[check {stamp}] {text}", file=sys.stderr, flush=True)

    def save(self):
        files.write_text(self.path, "\n".join(self.lines) + "\n")


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
    """(TrainRun, applies). A reference that was asked for by name must match the config; the
    builtin one is skipped (not failed) for a config it was not made with, e.g. --steps."""
    ref = compare.reference_of(reference)
    mismatch = ref.report.config_mismatch(config.to_dict())
    if mismatch and reference != compare.BUILTIN:
        field, made, runs = mismatch
        raise ConfigError(f"{reference}: the reference was made with {field}={made!r}, "
                          f"this check runs {field}={runs!r}")
    return ref, mismatch is None


class Clock:
    """Seconds since the check began. A step's span runs from where the one before ended (its
    mark), so that the steps cover the check's whole time, or from a start given."""

    def __init__(self):
        self.began = time.perf_counter()
        self.mark = 0.0

    def now(self):
        return time.perf_counter() - self.began

    def lap(self, since=None):
        """(started, seconds) from `since` (default: the mark) to now, which becomes the mark."""
        started, self.mark = self.mark if since is None else since, self.now()
        return started, self.mark - started


class Check:
    def __init__(self, config, out, reference, tolerances):
        self.config, self.out, self.tolerances = config, out, tolerances
        self.ref, self.ref_applies = reference
        self.log = Log(os.path.join(out, "check.log"))
        self.steps, self.runs, self.failure = [], {}, None  # failure: the error to raise at the end
        self.doing = STEPS[0]  # the step under way, named when a signal interrupts it
        self.interrupted = None  # the Interrupted error of the signal that ended the check
        self.plots = plots.available()  # without matplotlib the check still runs, without PNGs
        self.clock = Clock()

    def step(self, name, status, span, summary, **figures):
        """Record a step that took `span`, (started, seconds), as Clock.lap() gives it."""
        # Its start and end rounded: a step that starts where another ended starts there.
        started, ended = (round(t, 2) for t in (span[0], span[0] + span[1]))
        step = Step(name=name, status=status, started=started, seconds=round(ended - started, 2), summary=summary,
                    extra=figures)
        self.steps.append(step)
        self.log(render.check_step(STEPS.index(name) + 1, len(STEPS), step))
        if status == FAILED and self.failure is None:
            self.failure = CheckFailed(f"check failed at {name}: {summary}")

    def skip_rest(self, reason):
        for name in STEPS[len(self.steps):]:
            self.step(name, SKIPPED, self.clock.lap(), reason)

    def start(self, device, what, beside=""):
        """The training of `what` on `device` (a Device) in a child process, started now."""
        self.log(f"training {what} on {device} ({self.config.steps:,} steps){beside} ...")
        return child.start(self.config.replace(device=device))

    def finish(self, training, what, step):
        """The ChildRun of `training`, once it has ended."""
        self.doing = step
        run = training.result()
        self.log(f"{what} on {training.device}: {exit_words(run.exit_status)} after {run.seconds:.1f} s", run.stderr)
        return run

    def train(self, device, what, step):
        self.doing = step
        with self.start(device, what) as training:
            return self.finish(training, what, step)

    def run(self):
        device = self.config.device
        findings = doctor.collect()
        files.write_json(os.path.join(self.out, "doctor.json"), findings.to_dict())
        doctor_span = self.clock.lap()
        # The doctor's advice is about Theano's stack (pygpu, NVIDIA libraries for libgpuarray).
        theano = engines.get(self.config.engine).libgpuarray
        problems = [f"{p.what} (fix: {p.fix})" for p in findings.advice(device)] if theano else []

        with contextlib.ExitStack() as trainings:  # leaving it stops the CPU reference, if still running
            beside = None  # (the CPU reference's training, when it started)
            if device.own_hardware:
                cpu = trainings.enter_context(self.start(THE_CPU, "the CPU reference", f", beside the {device} runs"))
                beside = cpu, self.clock.now()
            first = self.train(device, "the seed config", "train")
            if first.exit_status == DeviceError.exit_status:  # the attempt is the doctor step's
                self.step("doctor", FAILED, self.clock.lap(since=0), f"device {device} is not usable: {first.error}",
                          problems=problems)
                self.failure = DeviceError(f"device {device} is not usable: {first.error}")
                return self.skip_rest(f"device {device} is not usable")
            self.step("doctor", PASSED, doctor_span,
                      f"{device} usable" + (f"; notes: {'; '.join(problems)}" if problems else ""), problems=problems)

            if not first.ok:
                self.step("train", FAILED, self.clock.lap(), first.error, exit_status=first.exit_status)
                return self.skip_rest("training failed")
            r = first.report
            self.runs[device.name] = r
            files.write_json(os.path.join(self.out, "train.json"), r.to_dict())
            self.step("train", PASSED if r.converged else FAILED, self.clock.lap(), render.check_train(r),
                      converged=r.converged, final_loss=r.final_loss, steps_per_second=r.steps_per_second,
                      weights_sha256=r.weights_sha256)

            second = self.train(device, "an independent repeat", "determinism")
            self.determinism(r, second)
            self.parity(device, r, beside)
        self.reference()

    def determinism(self, first, second):
        if not second.ok:
            return self.step("determinism", FAILED, self.clock.lap(), f"the repeat failed: {second.error}")
        diff = Difference.between(first, second.report)  # bitwise equal: the same weights digest
        same = diff.bitwise_equal
        self.step("determinism", PASSED if same else FAILED, self.clock.lap(), render.check_determinism(diff),
                  bitwise_equal=same, weights_sha256=[first.weights_sha256, second.report.weights_sha256])

    def parity(self, device, dev_report, beside=None):
        """The CPU reference against the device's run; `beside`: (its training, started with the
        device's, and when: the step's span starts there), else it trains now."""
        if device.is_cpu:
            return self.step("parity", SKIPPED, self.clock.lap(), "the device is the CPU, the reference device itself")
        if beside is None:
            cpu, since = self.train(THE_CPU, "the CPU reference", "parity"), None
        else:
            cpu, since = self.finish(beside[0], "the CPU reference", "parity"), beside[1]
        # Named as `parity --runs` names them: the device alone for Theano, ENGINE:DEVICE otherwise.
        ref, dev = (engines.label(self.config.engine, d) for d in (THE_CPU, device))
        reports, failures = {}, {}
        if cpu.ok:
            reports[ref] = self.runs[THE_CPU.name] = cpu.report
        else:
            failures[ref] = Failure(exit_status=cpu.exit_status, error=cpu.error)
        reports[dev] = dev_report
        result = parity.assess(self.config, [ref, dev], reports, failures, self.tolerances)
        pipeline.write(result, os.path.join(self.out, "parity.json"))
        if failures:
            self.step("parity", FAILED, self.clock.lap(since), f"the CPU run failed: {cpu.error}")
            if cpu.exit_status == DeviceError.exit_status:  # this node cannot run the reference at all
                self.failure = DeviceError(f"the CPU reference cannot run here: {cpu.error}")
            return
        if self.plots:
            parity.plot(os.path.join(self.out, "parity.png"), result)
        diff = result.differences[dev]
        self.step("parity", PASSED if result.passed else FAILED, self.clock.lap(since),
                  render.against(dev, ref, diff, self.tolerances), **diff.to_dict())

    def reference(self):
        self.doing = "reference"
        if not self.ref_applies:
            return self.step("reference", SKIPPED, self.clock.lap(),
                             "the committed reference is for the seed config; this check runs another")
        diffs = {name: Difference.between(self.ref.report, run) for name, run in self.runs.items()}
        ok = all(self.tolerances.admit(d) for d in diffs.values())
        if self.plots:
            label = functools.partial(engines.label, self.config.engine)
            plots.plot_runs(os.path.join(self.out, "check.png"), {label(d): run for d, run in self.runs.items()},
                            f"{label(self.config.device)} check against the reference",
                            reference=(self.ref.label, self.ref.report), atol=self.tolerances.atol,
                            rtol=self.tolerances.rtol)
        self.step("reference", PASSED if ok else FAILED, self.clock.lap(), render.check_reference(diffs),
                  differences=diffs)

    def status(self):
        """(status, exit status, the first failed step, one line saying why, or None)."""
        failed = next((s.name for s in self.steps if s.status == FAILED), None)
        if self.interrupted:
            return INTERRUPTED, self.interrupted.exit_status, failed, f"{self.interrupted} during the {self.doing} step"
        if isinstance(self.failure, DeviceError):
            return UNUSABLE, self.failure.exit_status, failed, str(self.failure)
        if self.failure:  # a failed verdict, or an unexpected error the CLI reports after the summary
            exit_status = getattr(self.failure, "exit_status", XorGpuError.exit_status)
            return FAILED, exit_status, failed or self.doing, " ".join(str(self.failure).split())
        return PASSED, EXIT_OK, None, None

    def summary(self):
        dev = self.runs.get(self.config.device.name)  # its TrainReport, None when it did not train
        status, exit_status, failed_step, reason = self.status()
        here = origin.here()
        requested = self.config.device.name
        stack = self.gpu_stack(dev)
        return CheckSummary(
            status=status, exit_status=exit_status, failed_step=failed_step, reason=reason,
            interrupted_by=self.interrupted.signal_name if self.interrupted else None, node=here["host"],
            config=self.config.to_dict(),
            # active and name are known once the device trained
            device=(RunDevice(requested=requested, active=dev.device.active, name=dev.device.name) if dev
                    else RunDevice(requested=requested, absent={"active", "name"})),
            steps=self.steps, tolerances=self.tolerances,
            reference=ReferenceUsed(label=self.ref.label, weights_sha256=self.ref.report.weights_sha256,
                                    origin=self.ref.report.origin, applies=self.ref_applies),
            versions=(dev.versions if dev else None) or {}, origin=here, runs=self.runs,
            wall_seconds=round(self.clock.now(), 2), **stack, absent={"cuda", "cudnn"} - stack.keys())

    def gpu_stack(self, dev):
        """{"cuda", "cudnn"}: summary.json's record of the NVIDIA stack a cuda check used: the
        driver, and for libgpuarray's engine the NVRTC and cuBLAS it loaded (cuda_libs) and what
        it did with cuDNN (None: the device did not train); other engines (JAX) load their own,
        named in their versions. {} off CUDA."""
        device = self.config.device
        if not device.is_cuda:
            return {}
        cuda = cuda_libs.describe(gpu=device.index)  # as the run's launch chose
        if not engines.get(self.config.engine).libgpuarray:
            return {"cuda": cuda.driver_only()}
        return {"cuda": cuda, "cudnn": dev.cudnn if dev else None}


def main(config, out, reference=compare.BUILTIN, tolerances=Tolerances()):
    ref = load_reference(config, reference)
    engine_python.python_for(config.engine)  # a missing engine environment: exit 3, nothing written
    out = prepare_out(out)
    check = Check(config, out, ref, tolerances)
    check.log(log_header(config.engine, config.device, origin.here()["host"], out, origin.batch_job()))
    with _Signals() as signals:
        try:
            check.run()
        except Interrupted:
            pass  # the summary says so, then it is raised again
        except Exception as exc:  # noqa: BLE001 - the summary is written, then the CLI reports it
            check.failure = check.failure or exc
            raise
        finally:
            signals.hold()
            check.interrupted = signals.caught
            summary, path = check.summary(), os.path.join(out, "summary.json")
            pipeline.write(summary, path)
            check.log(render.check_result(summary, path))
    summary.verdict()
    return EXIT_OK


class _Signals:
    """SIGTERM (a scheduler's time limit, a cancelled CI job) and SIGINT during a check raise
    Interrupted where the check is (a child being waited for is stopped: xor_gpu.child); after
    hold(), signals are only recorded, so that the summary is always written in full."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self):
        self.caught, self.holding = None, False
        self.saved = {s: signal.signal(s, child.deferring(self._handle)) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.caught is None:
            self.caught = Interrupted(signum)
            if not self.holding:
                raise self.caught

    def hold(self):
        self.holding = True

    def __exit__(self, *exc):
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
