"""Cache folders a run trusts (xor_gpu.private_folder): only the user's own. As root, beside a
second account (nobody) that makes folders of its own as another user of a shared machine
would: a folder another user owns or can change, or one inside a folder another user can
change, is refused with one line naming it, its owner and mode, and the fix (root is refused
too); folders made are 0700; a folder of the user's own is used as it is."""
import os
import stat

import pytest

from xor_gpu import private_folder
from xor_gpu.private_folder import UnsafeFolder

FIX = "set XOR_GPU_COMPILEDIR to a folder of your own"


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_made_folders_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o002)  # a group-writable umask
    try:
        made = private_folder.make(tmp_path / "a" / "b" / "c", FIX)
    finally:
        os.umask(old)
    assert made == str(tmp_path / "a" / "b" / "c")
    assert [_mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3


def test_a_folder_of_ones_own_is_used_as_it_is(tmp_path):
    """As tox makes its work folder (mode 0755), and through a link: the real path comes back,
    the folder that was checked is the one used."""
    tox = tmp_path / ".tox"
    tox.mkdir()
    tox.chmod(0o755)
    assert private_folder.make(tox, FIX) == str(tox) and _mode(tox) == 0o755
    (tmp_path / "link").symlink_to(tox)
    assert private_folder.make(tmp_path / "link" / "theano", FIX) == str(tox / "theano")


def test_a_folder_in_a_sticky_folder_of_roots_is_trusted(common):
    """As in /tmp (`common` is made like it): the sticky bit keeps other users from renaming or
    removing what is not theirs."""
    assert stat.S_IMODE(os.stat(common).st_mode) == 0o1777 and os.stat(common).st_uid == 0
    assert private_folder.make(common / "mine", FIX) == str(common / "mine")


def _theirs(common, nobody, mode):
    nobody.mkdir(common / "theirs", mode)
    return common / "theirs"


def _mine(common, mode):
    (common / "mine").mkdir()
    (common / "mine").chmod(mode)
    return common / "mine"


# (what, set up (common folder, second account) -> (folder given, folder named, its mode), the
# message's reason: "{folder}" is the folder named and "{real}" the folder given, as resolved)
CASES = [
    ("another user's folder", lambda c, n: (_theirs(c, n, 0o755),) * 2 + (0o755,), "is not yours"),
    ("another user's world-writable folder", lambda c, n: (_theirs(c, n, 0o777),) * 2 + (0o777,), "is not yours"),
    ("a link to another user's folder", lambda c, n: (_link(c, _theirs(c, n, 0o700)), c / "theirs", 0o700),
     "is not yours"),
    ("own folder, writable by all", lambda c, n: (_mine(c, 0o777),) * 2 + (0o777,), "can be changed by other users"),
    ("own folder, writable by its group", lambda c, n: (_mine(c, 0o770),) * 2 + (0o770,),
     "can be changed by other users"),
    ("inside another user's sticky folder", lambda c, n: (_theirs(c, n, 0o1777) / "mine", c / "theirs", 0o1777),
     "lies in {folder}, which other users can change"),
    ("inside another user's folder", lambda c, n: (_theirs(c, n, 0o777) / "mine", c / "theirs", 0o777),
     "lies in {folder}, which other users can change"),
    ("inside a world-writable folder without the sticky bit",
     lambda c, n: (_mine(c, 0o777) / "cache", c / "mine", 0o777), "lies in {folder}, which other users can change"),
]


def _link(common, target):
    (common / "link").symlink_to(target)
    return common / "link"


@pytest.mark.parametrize("what, setup, reason", CASES, ids=[c[0] for c in CASES])
def test_a_folder_another_user_can_change_is_refused_with_one_line(what, setup, reason, common, nobody):
    given, named, mode = setup(common, nobody)
    real = os.path.realpath(given)
    with pytest.raises(UnsafeFolder) as refused:
        private_folder.make(given, FIX)
    message = str(refused.value)
    assert refused.value.exit_status == 3 and len(message.splitlines()) == 1
    owner = "root" if os.stat(named).st_uid == 0 else nobody.name
    if "{folder}" in reason:  # a folder above is at fault: removing this one would not mend it
        assert message == f"cache folder {real} {reason.format(folder=named)} (owner {owner}, mode {mode:04o}): {FIX}"
    else:
        assert message == f"cache folder {real} {reason} (owner {owner}, mode {mode:04o}): {FIX}, or remove {real}"
