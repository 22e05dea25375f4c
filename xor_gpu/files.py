"""Writing files: every report, log and figure the package leaves is written atomically (a
temporary file in the same folder, then os.replace), so that a reader never sees half of
one and a failed write leaves the previous file as it was; and output paths are checked
before anything runs."""
import json
import os
import tempfile

from xor_gpu.errors import ConfigError


def write_atomically(path, write, binary=False):
    """Call write(f) on a temporary file beside `path`, then rename it to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_text(path, text):
    write_atomically(path, lambda f: f.write(text))


def write_json(path, data):
    """As the reports are written: indented, one final newline, NaN and infinities refused."""
    write_atomically(path, lambda f: (json.dump(data, f, indent=2, allow_nan=False), f.write("\n")))


def check_writable(path):
    """Fail before training, not after, when an output file cannot be written."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: folder {folder} is not writable")
