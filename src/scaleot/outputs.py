"""Output folders that are never destructive by surprise.

Every command checks its ``--out`` (and any run folder it writes) with
:func:`check_output` *before* any work starts:

- a path that is one of the command's inputs, lies inside one, or holds one is refused
  (``finetune --emulator E --out E``, ``plug --adapter A --out A``, ``--out .``);
- the current folder, the home folder and ``/`` (or anything holding them) are refused;
- an existing regular file or link at the path is refused (never renamed away);
- an existing non-empty folder is replaced only when it holds a scaleot artifact of the
  *same* kind and ``--overwrite`` was given; a folder of another kind, or one that is
  not a scaleot artifact at all (your notes), is always refused;
- the nearest existing parent must be a writable folder, so a bad path fails in a
  second, not after an hour of training;
- the folder's own name must be a name (not ``/``, ``.`` or ``..``) short enough that the
  hidden names written beside it (``.<name>.tmp-XXXXXXXX``, ``<name>.run``) still fit the
  file system's name limit (:func:`check_out_name`).

Names that *become* paths inside an output folder (a run YAML's emulator names, the folder
name of each task) pass one rule, :func:`check_name`, and :func:`path_inside` builds every
such path: the result must stay inside the folder, links included.

The folder itself is then written under a temporary name and renamed into place
(:func:`scaleot.exchange.manifest.atomic_output_dir`), which removes the temporary on any failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from scaleot.errors import ScaleOTError
from scaleot.exchange.kinds import RUN
from scaleot.exchange.manifest import MANIFEST

# What a run folder holds while a run is in progress (before its manifest exists).
RUN_ENTRIES = frozenset({"checkpoints", "best.safetensors", "log.jsonl", "tb"})
NAME_MAX = 255  # bytes in one path component on every common file system
# The longest hidden name written beside an output folder: ".<name>.tmp-XXXXXXXX" (atomic_output_dir).
SIDE_NAME_EXTRA = len(".") + len(".tmp-") + 8 + 2
MAX_NAME_CHARS = 100
NAME_RULE = re.compile(r"[0-9A-Za-z_][0-9A-Za-z_.-]*")


def check_name(name: object, what: str) -> str:
    """The one rule for a name that becomes a folder or file name inside an output folder.

    1 to :data:`MAX_NAME_CHARS` characters from ``[0-9A-Za-z_.-]``, not starting with ``.``
    or ``-``: so never empty, ``.``, ``..``, absolute, hidden or holding a separator.

    Raises:
        ScaleOTError: one line naming ``what``.
    """
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not NAME_RULE.fullmatch(name):
        raise ScaleOTError(f"{what} {name!r:.60} cannot name a folder: use 1 to {MAX_NAME_CHARS} letters, "
                           "digits, '_', '-' or '.', starting with a letter, digit or '_'")
    return name


def path_inside(root: str | Path, *names: str, what: str = "name") -> Path:
    """``root / names[0] / ...``, each name checked by :func:`check_name`; refused when the
    path (through a link already there) resolves outside ``root``."""
    root = Path(root)
    for n in names:
        check_name(n, what)
    path = root.joinpath(*names)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ScaleOTError(f"{path} leads outside {root} (through a link); refusing to write there")
    return path


def check_out_name(out: str | Path, what: str = "--out") -> Path:
    """An output path whose last component is a real name that leaves room for the hidden
    names written beside it (the file-system limit is read from the nearest existing parent)."""
    out = Path(out)
    name = out.name
    if not name or name in (".", ".."):
        raise ScaleOTError(f"{what} {out} has no folder name of its own; name a new folder (e.g. {out}/result)")
    limit = NAME_MAX
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    with contextlib.suppress(OSError, ValueError):
        limit = min(limit, os.pathconf(parent, "PC_NAME_MAX"))
    room = limit - SIDE_NAME_EXTRA
    if len(os.fsencode(name)) > room:
        raise ScaleOTError(f"{what} name is {len(os.fsencode(name))} bytes long; at most {room} fit beside the "
                           f"hidden working names (file-system limit {limit})")
    return out


def _resolve(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def artifact_kind(folder: str | Path) -> str | None:
    """The manifest kind of a scaleot artifact folder, ``"?"`` for an unreadable manifest, else None."""
    p = Path(folder) / MANIFEST
    if not p.is_file() or p.is_symlink():
        return None
    try:
        doc = json.loads(p.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return "?"
    if not isinstance(doc, dict) or doc.get("format") != "scaleot-manifest":
        return "?"
    kind = doc.get("kind")
    return kind if isinstance(kind, str) else "?"


def _check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor must be a writable folder (no file in the way)."""
    parent = path.parent
    while not parent.exists() and not parent.is_symlink():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ScaleOTError(f"{what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ScaleOTError(f"{what} {path}: {parent} is not writable")


def local_path(name_or_path: str | Path | None) -> Path | None:
    """``name_or_path`` as a path when it names something on disk (a model folder, a task file)."""
    if name_or_path is None:
        return None
    p = Path(name_or_path).expanduser()
    return p if p.exists() or p.is_symlink() else None


def check_output(
    out: str | Path,
    kind: str,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    resume: bool = False,
    own_entries: Iterable[str] = (),
    what: str = "--out",
) -> Path:
    """Refuse an output path that would destroy something; see the module docstring.

    Args:
        out: the output folder.
        kind: the manifest kind the command writes there (``emulator``, ``adapter``...).
        overwrite: the user asked to replace an existing artifact of the same kind.
        inputs: paths the command reads (folders or files); ``None`` entries are skipped.
        resume: the command continues a run in ``out`` (an unfinished run folder is fine).
        own_entries: top-level names that an unfinished run of this command leaves in
            ``out`` (a folder holding only these counts as this command's own).
        what: how to name the path in messages.

    Returns:
        ``out`` as a :class:`Path`.

    Raises:
        ScaleOTError: one line, before any work starts.
    """
    out = Path(out)
    target = _resolve(out)
    for item in inputs:
        if item is None or (isinstance(item, str) and not item):
            continue
        src = _resolve(item)
        if _overlap(target, src):
            raise ScaleOTError(f"{what} {out} overlaps an input of this command ({item}); "
                               "choose another output folder")
    protected = {Path.cwd().resolve(), Path.home().resolve(), Path(target.anchor)}
    for p in protected:
        if target == p or target in p.parents:
            raise ScaleOTError(f"{what} {out} is {p} or holds it; choose a new folder for the output")
    check_out_name(out, what)
    if out.is_symlink():
        raise ScaleOTError(f"{what} {out} is a link; refusing to write through it")
    if out.exists():
        if not out.is_dir():
            raise ScaleOTError(f"{what} {out} exists and is not a folder; refusing to replace it")
        entries = {p.name for p in out.iterdir()}
        if entries:
            found = artifact_kind(out)
            own = set(own_entries) | RUN_ENTRIES
            unfinished = found is None and entries <= own
            if found is None and not unfinished:
                raise ScaleOTError(f"{what} {out} is a non-empty folder that is not a scaleot {kind}; "
                                   "choose a new or empty folder")
            if found is not None and found != kind:
                raise ScaleOTError(f"{what} {out} holds a {found!r} artifact, not {kind!r}; refusing to replace it")
            if not (overwrite or resume):
                raise ScaleOTError(f"{what} {out} exists (pass --overwrite to replace it)")
    else:
        _check_parent(out, what)
    return out


def check_output_file(out: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path | None] = (),
                      what: str = "--out") -> Path:
    """A result file (``evaluate --out eval.json``): not an input, not a folder, replaced only with ``overwrite``."""
    out = check_out_name(out, what)
    target = _resolve(out)
    for item in inputs:
        if item is not None and _overlap(target, _resolve(item)):
            raise ScaleOTError(f"{what} {out} overlaps an input of this command ({item})")
    if out.is_symlink() or out.is_dir():
        raise ScaleOTError(f"{what} {out} is a folder or a link; refusing to replace it")
    if out.exists() and not overwrite:
        raise ScaleOTError(f"{what} {out} exists (pass --overwrite to replace it)")
    if not out.exists():
        _check_parent(out, what)
    return out


def check_run_dir(
    run_dir: str | Path, *, resume: bool, overwrite: bool, inputs: Iterable[str | Path | None] = (),
    what: str = "--run-dir",
) -> Path:
    """A folder of checkpoints and logs: ``--resume`` continues it, a fresh run needs it empty.

    A fresh run into a run folder that holds checkpoints is refused unless ``overwrite``;
    then only the run's own entries (checkpoints, logs, best weights) are removed, and a
    folder holding anything else is refused.
    """
    run_dir = Path(run_dir)
    check_output(run_dir, RUN, inputs=inputs, resume=True, what=what)
    if run_dir.is_dir() and not resume:
        entries = {p.name for p in run_dir.iterdir()}
        if entries and not overwrite:
            raise ScaleOTError(f"{what} {run_dir} holds an earlier run (pass --resume to continue it "
                               "or --overwrite to start over)")
        if entries:
            clear_run_entries(run_dir)
    return run_dir


def clear_run_entries(run_dir: Path) -> None:
    """Remove a run folder's own entries (checkpoints, logs, best weights), nothing else."""
    for name in RUN_ENTRIES:
        p = run_dir / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
