"""Entry points: whether the file an action names may be run (checked at every load)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from attune.store.models import RunnerType


def entry_point_problem(
    actions_dir: Path, roots: tuple[str, str], entry_point: str, runner_type: str
) -> str | None:
    """Why ``entry_point`` is not a regular file under ``actions_dir`` that stays inside the
    pack (``roots``: the pack's and its actions/' resolved paths), or None."""
    pack_root, real_actions_dir = roots
    if entry_point.startswith("/"):
        return f"{entry_point!r} is absolute; give a path relative to the pack's actions/"
    if ".." in entry_point.split("/") or "\0" in entry_point:
        return f"{entry_point!r} must not contain '..': it must stay under the pack's actions/"
    # Plain concatenation: entry_point is relative (checked above), and this runs per action
    # on every reload.
    path = f"{actions_dir}{os.sep}{entry_point}"
    try:
        info = os.lstat(path)
        resolved = f"{real_actions_dir}{os.sep}{entry_point}"
        # A plain file name that is no symlink is inside the already resolved actions/.
        if "/" in entry_point or stat.S_ISLNK(info.st_mode):
            resolved = os.path.realpath(path, strict=True)
            info = os.stat(resolved)
    except (FileNotFoundError, NotADirectoryError):
        return f"{entry_point!r} does not exist (looked for {path})"
    except OSError as error:  # a symlink loop, a permission denied
        return f"{entry_point!r} cannot be resolved: {error}"
    if not resolved.startswith(pack_root + os.sep):
        return f"{entry_point!r} resolves to {resolved}, outside the pack {pack_root}"
    if stat.S_ISDIR(info.st_mode):
        return f"{entry_point!r} is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{entry_point!r} is not a regular file"
    if runner_type == RunnerType.NATIVE and not os.access(resolved, os.X_OK):
        return f"{entry_point!r} is not executable, as a native action's file must be (chmod +x)"
    return None
