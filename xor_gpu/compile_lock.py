"""Theano's compile lock on a compile cache that many processes share, on one host or many (a
Slurm array on a shared home): waiting for it, keeping it fresh, and taking it over from an
owner that is gone.

Theano 1.0.5 (theano/gof/compilelock.py) guards its compiledir with a folder, `lock_dir`,
whose file `lock` names its owner in a first line "PID_RANDOM_HOSTNAME". A waiter sleeps 5 to
10 s between looks, takes over at once the lock of a dead process of its own host, and the
lock of another host only once it has not changed for compile.timeout (120 s), which its owner
refreshes only now and then: a task killed while compiling on one node held up every task of
the array for two minutes, silently (measured: 157 s instead of 26 s). So `install()` replaces
the waiting in Theano's module, in the same folder and format (a plain Theano sharing the cache
still sees every lock, and keeps seeing a held one change):

- While this process holds the lock, a heartbeat (xor_gpu/lock_heartbeat.py, a process of its
  own: the main thread may hold the GIL for long in native code) rewrites the lock file every
  HEARTBEAT s, with a new RANDOM and a second line saying that it beats.
- A waiter looks every 0.25 to 0.5 s. It takes over the lock of a process of this host that has
  ended at once, a beating lock that has not changed for STALE s, and a lock that does not beat
  (a plain Theano's) after Theano's own 120 s. A live compile, however long, keeps beating and
  is never taken over.
- Takeovers go one at a time (the file lock_dir.takeover, made exclusively), and the lock is
  removed only if it still reads as it did when it was found stale: a lock another waiter took
  meanwhile is never removed.
- `keeping()`: once this process compiles a module inside the block, it keeps the lock to the
  end of the block, so that the functions of a run compile in one go; tasks that start together
  on a cold cache then wait for the first one's whole compilation and find every module made,
  instead of taking turns module by module.

Each takeover, and a wait longer than WAIT_NOTE s, is one line on stderr, passed to the `note`
that install() was given (the compile cache's record of the run).
"""
import atexit
import contextlib
import dataclasses
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time

from xor_gpu.errors import XorGpuError

LOCK_DIR = "lock_dir"
HEARTBEAT = 2.0  # seconds between two refreshes of a held lock
STALE = 10.0  # a beating lock unchanged this long has lost its owner
THEANO_TIMEOUT = 120.0  # Theano's compile.timeout: for a lock that does not beat
POLL = 0.5  # a waiter looks again after a random 0.25 to 0.5 s
WAIT_NOTE = 10.0  # a wait this long is said, once
BEATS = f"xor-gpu heartbeat every {HEARTBEAT:g} s"  # the second line of a lock that beats
GUARD = ".takeover"  # beside lock_dir: held while a stale lock is removed
HEARTBEAT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lock_heartbeat.py")


def _say(text):
    """The default `note`: the line on stderr."""
    print(f"xor-gpu: {text}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class _State:
    """This process's side of the lock: one compile cache at a time, as in Theano."""
    note: object = _say  # note(text): says an event in one line
    waited: float = 0.0  # seconds spent waiting for other processes' locks
    held: str = None  # the lock file this process holds, while it holds it
    heart: subprocess.Popen = None
    keeping: bool = False
    kept: bool = False
    theano: object = None  # Theano's compilelock module, once install()ed


STATE = _State()


@dataclasses.dataclass(frozen=True)
class Owner:
    """The owner a lock file names in its first line, "PID_RANDOM_HOSTNAME" (the host name may
    hold "_" itself); pid None for a file that names none (empty: just made, or its owner died
    before writing it)."""
    pid: int = None
    host: str = ""

    @classmethod
    def of(cls, text):
        pid, _, rest = text.partition("\n")[0].strip().partition("_")
        host = rest.partition("_")[2]
        return cls(int(pid), host) if pid.isdigit() and host else cls()

    @property
    def here(self):
        return self.host == socket.gethostname()

    def is_me(self):
        return self.here and self.pid == os.getpid()

    def ended(self):
        """A process of this host that no longer runs (another host's cannot be asked)."""
        if not self.here or self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, another user's
            return False
        return False

    def __str__(self):
        return f"{self.host}:{self.pid}" if self.pid is not None else "an unnamed owner"


def lock_file(directory):
    return os.path.join(directory, LOCK_DIR, "lock")


def read(path):
    """The text of a lock file; "" when there is none or it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, ValueError):
        return ""


@contextlib.contextmanager
def held(directory, note=None):
    """Hold the compile lock of `directory` in the block. Theano in this process may hold it
    already (a failed compilation can leave it taken): then it is simply used. `note`: says
    the events of the wait (default: install()'s)."""
    path = lock_file(directory)
    mine = acquire(os.path.dirname(path), note)
    try:
        yield
    finally:
        if mine:
            release(path)


def acquire(lock_dir, note=None):
    """Take the lock folder `lock_dir`, waiting while another live process holds it, taking
    it over from an owner that is gone. Returns False when this process held it already."""
    path = os.path.join(lock_dir, "lock")
    wait = _Wait(lock_dir, note or STATE.note)
    while True:
        try:
            os.makedirs(os.path.dirname(lock_dir), exist_ok=True)
            os.mkdir(lock_dir)
            break
        except FileExistsError:
            pass
        except OSError as exc:
            _failed(lock_dir, exc)
        text = read(path)
        if Owner.of(text).is_me():
            return False
        wait.look(text)
    STATE.held = path  # from here on, an exit lets it go, whatever interrupts this (let_go_at_exit)
    STATE.waited += wait.seconds()
    head, tail = f"{os.getpid()}_", f"_{socket.gethostname()}\n{BEATS}\n"
    try:
        _write(path, f"{head}{random.randrange(10 ** 10):010d}{tail}")
    except OSError as exc:  # e.g. a full disk: leave no lock without an owner behind
        STATE.held = None
        shutil.rmtree(lock_dir, ignore_errors=True)
        _failed(lock_dir, exc)
    _heartbeat({"hold": path, "every": HEARTBEAT, "text": [head, tail], "spare": _spare_name()})
    return True


def release(path, force=False):
    """Remove the lock file at `path` and its folder, if this process holds it (or `force`);
    its heartbeat stops first, so that it never writes a lock another process took since."""
    owner = Owner.of(read(path))
    # Ours: it names this process, or this process made the folder and had not named itself yet.
    if not (force or owner.is_me() or (STATE.held == path and owner.pid is None)):
        return
    if STATE.held == path:
        STATE.held = None
        _heartbeat({"hold": None})
    with contextlib.suppress(OSError):
        os.remove(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))


@atexit.register
def let_go_at_exit():
    """A lock this process still holds as it ends (an exception between taking the lock and
    Theano counting it) is let go: a signal that ends a run must not leave it to a timeout."""
    if STATE.held:
        release(STATE.held)


class _Wait:
    """One wait for a lock folder: what its file said since when, and what to do about it."""

    def __init__(self, lock_dir, note):
        self.lock_dir, self.note, self.began = lock_dir, note, time.monotonic()
        self.seen, self.since = None, self.began
        self.guard_seen, self.guard_since = None, self.began
        self.told = False

    def seconds(self):
        return time.monotonic() - self.began

    def look(self, text):
        """The lock file says `text` now: take the lock over if its owner is gone, else sleep."""
        if not text and not os.path.lexists(self.lock_dir):
            return  # released just now: try again at once
        now = time.monotonic()
        if text != self.seen:  # the first text counts from the wait's start: a dead owner's lock
            self.since = now if self.seen is not None else self.began  # is taken over, not waited for
            self.seen = text
        owner, silent = Owner.of(text), now - self.since
        limit = STALE if BEATS in text else THEANO_TIMEOUT
        why = "a process that has ended" if owner.ended() else (
            f"not refreshed for {silent:.0f} s" if silent >= limit else None)
        if why and self.take_over(text):
            self.note(f"warning: took over the compile lock of {owner}, {why}")
            return
        if not self.told and now - self.began >= WAIT_NOTE:
            self.told = True
            self.note(f"waiting for the compile lock of {os.path.dirname(self.lock_dir)}: {owner} is "
                      f"compiling (refreshed {silent:.0f} s ago)")
        time.sleep(random.uniform(POLL / 2, POLL))

    def take_over(self, stale):
        """Remove the lock folder if its file still says `stale`; one process at a time."""
        guard = self.lock_dir + GUARD
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self.stale_guard(guard)
            return False
        except OSError as exc:
            _failed(self.lock_dir, exc)
        try:
            os.write(fd, f"{os.getpid()}_{socket.gethostname()}\n".encode())
            if read(os.path.join(self.lock_dir, "lock")) != stale:
                return False  # refreshed, or taken by another waiter meanwhile
            try:
                shutil.rmtree(self.lock_dir)
            except FileNotFoundError:
                pass
            except OSError as exc:
                _failed(self.lock_dir, exc)
            return True
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.remove(guard)

    def stale_guard(self, guard):
        """A takeover lasts a few system calls: a guard that stays STALE s was left by a
        process killed in the middle of one."""
        text, now = read(guard), time.monotonic()
        if text != self.guard_seen:
            self.guard_seen, self.guard_since = text, now
        elif now - self.guard_since >= STALE:
            with contextlib.suppress(OSError):
                os.remove(guard)


def _write(path, text):
    """The whole lock file at once, through a file beside its folder (never in it: Theano
    removes the folder by its file and rmdir, and a compile cache's tmp* folders are modules)."""
    spare = os.path.join(os.path.dirname(os.path.dirname(path)), _spare_name())
    with open(spare, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(spare, path)


def _spare_name():
    return f".{LOCK_DIR}-{socket.gethostname()}-{os.getpid()}"


def _heartbeat(command):
    """Send the heartbeat process a command and wait until it is in effect. It is started at the
    first hold; one that ended (a signal sent to the whole job) is started again for a hold."""
    for _ in range(2):
        heart = STATE.heart
        if heart is None or heart.poll() is not None:
            if not command["hold"]:
                return  # nothing beats
            try:
                # -I -S: the standard library only; -B: no bytecode written (-I ignores the
                # environment's PYTHONDONTWRITEBYTECODE, which keeps the offline bundle as archived)
                STATE.heart = heart = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-B", HEARTBEAT_SCRIPT], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, close_fds=True)
            except OSError as exc:
                raise XorGpuError(f"cannot start the heartbeat of the compile lock ({sys.executable} "
                                  f"{HEARTBEAT_SCRIPT}: {exc.strerror or exc})") from None
        try:
            heart.stdin.write(json.dumps(command) + "\n")
            heart.stdin.flush()
            if heart.stdout.readline() == "ok\n":
                return
        except OSError:
            pass
        STATE.heart = None
        with contextlib.suppress(OSError):
            heart.kill()
        heart.wait()
    if command["hold"]:  # a lock that does not beat would be taken over while this process compiles
        raise XorGpuError(f"the heartbeat of the compile lock ({HEARTBEAT_SCRIPT}) does not answer")


def _failed(lock_dir, exc):
    raise XorGpuError(f"cannot take the compile cache lock {lock_dir}: {exc.strerror or exc}") from None


# --- Theano ---------------------------------------------------------------------------------

def install(compilelock, note=None):
    """Make Theano's compilelock module (theano.gof.compilelock) wait, beat and take over as
    above. Its get_lock() and release_lock() keep counting nested holds; what they call to
    take, refresh and remove the lock is replaced. `note(text)` says an event (default: stderr)."""
    STATE.note = note or _say
    STATE.theano = compilelock
    if getattr(compilelock.lock, "beats", False):
        return

    def lock(tmp_dir, **theano_options):  # Theano's timeout and waits: ours instead
        acquire(tmp_dir)

    def refresh_lock(lock_file):  # the heartbeat keeps it fresh
        return read(lock_file).partition("\n")[0].strip()

    def unlock(unlocker, force=False):
        release(os.path.join(unlocker.tmp_dir, "lock"), force)

    lock.beats = True
    compilelock.lock, compilelock.refresh_lock, compilelock.Unlocker.unlock = lock, refresh_lock, unlock


def keep_after_compiling(module_cache):
    """Theano's ModuleCache (theano/gof/cmodule.py) adds a module it compiled with the lock
    held: inside keeping(), this process then holds it once more, to the end of the block."""
    add = module_cache._add_to_cache
    if getattr(add, "keeps", False):
        return

    def _add_to_cache(cache, module, key, module_hash):
        added = add(cache, module, key, module_hash)
        if STATE.keeping and not STATE.kept and STATE.theano is not None:
            STATE.theano.get_lock()  # nested: counted, already held
            STATE.kept = True
        return added

    _add_to_cache.keeps = True
    module_cache._add_to_cache = _add_to_cache


@contextlib.contextmanager
def keeping():
    """Compile the block's functions in one hold of the lock, once they need a compilation."""
    STATE.keeping = True
    try:
        yield
    finally:
        STATE.keeping = False
        if STATE.kept:
            STATE.kept = False
            STATE.theano.release_lock()


def waited_seconds():
    """Seconds this process has spent waiting for locks of other processes."""
    return STATE.waited
