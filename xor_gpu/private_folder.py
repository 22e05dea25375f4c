"""Cache folders a run trusts: only the user's own.

A run executes or loads what its caches hold: Theano's compiled modules (loaded into the
process), PoCL's compiled kernels, the folder of NVIDIA library links put first on
LD_LIBRARY_PATH, the CUDA stand-in, and in the offline bundle its unpacked Python. A cache
another user can change runs their code as this user, root included. So a cache folder is
used only when no one else can change it, nor replace it:

- the folder itself is owned by this user and not writable by group or others;
- every folder above it is owned by this user or root and, where group or others can write
  it, has the sticky bit (as /tmp: there no one can rename or remove what is not theirs).

Ownership is compared, never access(): root can write anywhere, yet a folder another user
owns is refused to root too. Folders made here get mode 0700 whatever the umask; one that
exists and passes is used as it is (a tox work folder, mode 0755, is fine). bundle/run.sh
applies the same rule, in shell, to the bundle's folder before its Python starts.
"""
import os
import pwd
import stat

from xor_gpu.errors import DeviceError

PRIVATE = 0o700
OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
ROOT = 0
CACHE_HOME_FIX = "set XDG_CACHE_HOME to a folder of your own"  # host.cache_folder's caches


class UnsafeFolder(DeviceError):
    """A cache folder another user can change: exit 3, one line with the folder, its owner
    and mode, and the fix."""


def _owner(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _seen(st):
    return f"owner {_owner(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}"


def problem(path, uid=None):
    """None when user `uid` (default: this process's) can trust the existing folder `path`
    (a real path); else (why, in words; whether removing `path` mends it: not when a folder
    above it is at fault)."""
    uid = os.geteuid() if uid is None else uid
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        return f"cache folder {path} is not a folder ({_seen(st)})", True
    if st.st_uid != uid:
        return f"cache folder {path} is not yours ({_seen(st)})", True
    if st.st_mode & OTHERS_WRITE:
        return f"cache folder {path} can be changed by other users ({_seen(st)})", True
    above = path
    while above != os.path.dirname(above):
        above = os.path.dirname(above)
        st = os.stat(above)
        foreign = st.st_uid not in (uid, ROOT)
        if foreign or (st.st_mode & OTHERS_WRITE and not st.st_mode & stat.S_ISVTX):
            return f"cache folder {path} lies in {above}, which other users can change ({_seen(st)})", False
    return None


def make(path, fix):
    """The real path of the cache folder `path`, made where missing (each folder made gets
    mode 0700) and checked: UnsafeFolder when another user could change it, with `fix`
    (e.g. "set XOR_GPU_COMPILEDIR to a folder of your own") in its line."""
    real = os.path.realpath(os.path.expanduser(path))  # as Theano reads its compiledir
    missing = []
    folder = real
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE)
        except FileExistsError:  # another process made it meanwhile: checked below all the same
            pass
    found = problem(real)
    if found:
        reason, remove = found
        raise UnsafeFolder(f"{reason}: {fix}" + (f", or remove {real}" if remove else ""))
    return real
