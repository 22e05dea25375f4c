"""A one-node Slurm cluster from Debian's packages (munge, slurmctld, slurmd, slurm-client),
configured and run entirely inside one folder on localhost: its own munge key and socket,
its own ports, state, spool, logs and pid files. Start and stop it with `SlurmCluster`;
clients find it through the environment of `env()` (SLURM_CONF).

Choices that matter here:
- CPUs=8 on a smaller machine (SlurmdParameters=config_overrides): the array's tasks ask for
  2 CPUs each and run side by side, as on a cluster of several nodes.
- A `gpu` gres of four device files that are links to /dev/null: slurmd drops GPUs without
  files, and checks that each file is a device. --gres=gpu:1 then works as on a GPU node.
- proctrack/linuxproc and task/none: no cgroups needed; signals still reach every process
  of a job (the time limit's SIGTERM, then SIGKILL after KillWait).
- No slurmdbd (no sacct): MinJobAge keeps ended jobs in slurmctld, where `squeue --json
  --states=all` shows their state and exit code.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "mungekey")
KILL_WAIT = 30  # seconds between a time limit's SIGTERM and its SIGKILL (the check writes its summary)
CONF = """\
ClusterName=xorgpu
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MinJobAge=86400
KillWait={kill_wait}
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
NodeName=localhost CPUs=8 RealMemory=16000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def program(name):
    """The path of a daemon or client (the daemons are in /usr/sbin, not on every user's PATH)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def missing_programs():
    return [p for p in DAEMONS + CLIENTS if not program(p)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, n=3000):
    return path.read_text(errors="replace")[-n:] if path.exists() else f"({path.name}: none)"


class SlurmCluster:
    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.conf = self.root / "slurm.conf"
        self.procs = {}

    def env(self, **extra):
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *args, cwd=None, timeout=60):
        return subprocess.run(args, env=self.env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)

    def start(self, timeout=60):
        root = self.root
        for d in ("munge", "state", "spool", "log", "gpus"):
            (root / d).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            (root / "gpus" / f"gpu{i}").symlink_to("/dev/null")
        self.conf.write_text(CONF.format(root=root, ctld_port=_free_port(), slurmd_port=_free_port(),
                                         kill_wait=KILL_WAIT))
        (root / "gres.conf").write_text(f"Name=gpu File={root}/gpus/gpu[0-3]\n")
        key = root / "munge" / "munge.key"
        subprocess.run([program("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        munge = root / "munge"
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={munge}/munge.socket",
                               f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                               f"--log-file={root}/log/munged.log", f"--seed-file={munge}/munged.seed"])
        self._wait(lambda: (munge / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        self._wait(lambda: self.node_state() == "IDLE", timeout, "the node did not become IDLE")

    def _spawn(self, name, argv):
        log = open(self.root / "log" / f"{name}.stderr", "w")
        self.procs[name] = subprocess.Popen([program(argv[0]), *argv[1:]], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _wait(self, ready, timeout, what):
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{what} (exited: {dead or 'none'})\n{self.logs()}")
            time.sleep(0.5)

    def node_state(self):
        proc = self.run("scontrol", "show", "node", "localhost", "--oneliner")
        fields = dict(f.split("=", 1) for f in proc.stdout.split() if "=" in f)
        return fields.get("State")

    def logs(self):
        return "\n".join(f"--- {name} ---\n{_tail(self.root / 'log' / name)}"
                         for name in ("munged.log", "slurmctld.log", "slurmd.log", "slurmd.stderr"))

    def jobs(self):
        """Every job slurmctld knows, ended ones too (MinJobAge), as squeue's JSON lists them."""
        proc = self.run("squeue", "--json", "--states=all")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["jobs"]

    def wait_for_jobs(self, timeout):
        """Wait until no job is pending or running (or the timeout); returns jobs()."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.jobs()
            if not any(j["job_state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED")
                       for j in jobs):
                return jobs
            time.sleep(2)
        return self.jobs()

    def stop(self):
        """Cancel what still runs (its processes get SIGTERM, then SIGKILL after KillWait),
        then stop the daemons by their pids, slurmd first."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--user=root")
            self.wait_for_jobs(KILL_WAIT + 30)
        for name in reversed(DAEMONS):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
