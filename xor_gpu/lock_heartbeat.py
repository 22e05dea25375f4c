"""The heartbeat of the compile lock its parent holds (xor_gpu/compile_lock.py starts it).

A process of its own, not a thread: the parent's main thread may hold the GIL for many
seconds in native code (an OpenCL or CUDA kernel build while a compiled module starts), and a
lock that stopped beating would be taken over. It runs with the standard library only and
writes no bytecode (`python -I -S -B lock_heartbeat.py`), and reads commands on stdin, one
JSON object a line, answering each with "ok" once it is in effect:

  {"hold": PATH, "every": SECONDS, "text": [HEAD, TAIL], "spare": NAME}
      every SECONDS, rewrite the lock file PATH as HEAD + ten random digits + TAIL (through
      NAME, a file beside its folder), while its first line is still the parent's: it starts
      with HEAD ("PID_") and ends as TAIL's first line ("_HOSTNAME")
  {"hold": null}
      stop beating (answered before the parent removes the lock)

It ends when stdin closes or it is given another parent, i.e. when its parent ends, however
it ended: a lock whose owner was killed stops beating at once.
"""
import json
import os
import random
import select
import signal
import sys
import time


def beat(hold):
    """Rewrite the lock file whole (a reader never sees half of it), if it is still the parent's."""
    path, (head, tail) = hold["hold"], hold["text"]
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().rstrip("\n")
        if not (first.startswith(head) and first.endswith(tail.split("\n")[0])):
            return  # no longer the parent's
        spare = os.path.join(os.path.dirname(os.path.dirname(path)), hold["spare"])
        with open(spare, "w", encoding="utf-8") as f:
            f.write(f"{head}{random.randrange(10 ** 10):010d}{tail}")
        os.replace(spare, path)
    except OSError:
        pass  # removed meanwhile (taken over, or the parent ended): nothing to refresh


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's, which frees the lock then
    commands, replies = sys.stdin.buffer.raw, sys.stdout
    hold, due, parent = None, None, os.getppid()
    while os.getppid() == parent:  # else the parent has ended (and its lock must go stale)
        wait = None if hold is None else max(0.0, due - time.monotonic())
        if select.select([commands], [], [], wait)[0]:
            line = commands.readline()
            if not line:
                return  # the parent has ended
            hold = json.loads(line)
            hold = hold if hold.get("hold") else None
            due = time.monotonic() + (hold["every"] if hold else 0)
            replies.write("ok\n")
            replies.flush()
        elif hold is not None:
            beat(hold)
            due = time.monotonic() + hold["every"]


if __name__ == "__main__":
    main()
