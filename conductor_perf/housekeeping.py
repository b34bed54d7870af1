"""Disk housekeeping of the results folder: scratch data of a finished run, old runs, run sizes.

A run writes two kinds of files under ``results/<run-id>/``:

- **reports and data**: Robot's logs, ``metrics.json``, summaries, the hot-spot profile, the SUT's
  log (compressed when the run ends). They stay.
- **scratch**: what the SUT and the benchmarks write while measuring: the embedded conductor's runs
  root (its task buses hold half a million benchmark messages), the storage benchmarks' runs, the
  file-system probe's folders. Whoever creates scratch notes it with :func:`note_scratch` (a line
  in ``<run>/scratch.txt``); :func:`remove_scratch` deletes it when the run has ended, after the
  last measurement, unless the user keeps it (``--keep-data``). :func:`finish` is that end for
  every runner (``make perf``, a comparison's rounds, a swarm), with the run directory's size.

Nothing is deleted *during* a run: on some file systems (ext4 without a journal) creating files
stays slow for about a minute after many were deleted, which would show in the figures of the
tests that follow. Deleting at the end costs nothing measured.

:func:`prune_runs` removes all but the newest run directories (``make prune KEEP=n``); it never
touches ``history.jsonl`` (runs are compared through it) and keeps ``latest`` pointing at a run
that exists.

Example::

    note_scratch("results/20261205-105118-4242", "results/20261205-105118-4242/sut-4243/root")
    cleaned = remove_scratch("results/20261205-105118-4242")
    print(cleaned.summary())
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SCRATCH_LIST = "scratch.txt"
"""File in a run directory listing its scratch paths (relative, ``*`` patterns allowed), one a line."""
LOG_COMPRESS_MIN_BYTES = 1 << 20
"""Logs larger than this are gzip-compressed when the run ends (the SUT's request log reaches 50-100 MB)."""
RUN_MARKERS = ("output.xml", "metrics.json", "metrics.d", "log.html", SCRATCH_LIST)
"""A folder of the results root holding one of these is a run directory (``prune`` may remove it)."""
HISTORY_FILE = "history.jsonl"
LATEST = "latest"
MB = 1_000_000


def tree_size(path: str | os.PathLike[str]) -> int:
    """Bytes allocated on disk under ``path`` (symlinks not followed; a vanished file counts 0)."""
    total = 0
    p = Path(path)
    try:
        st = p.lstat()
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_blocks * 512
    for dirpath, dirnames, filenames in os.walk(p, onerror=lambda _e: None):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total + st.st_blocks * 512


def link_latest(results_root: str | os.PathLike[str], name: str, link: str = LATEST) -> bool:
    """Point ``<results_root>/<link>`` (``latest``, ``latest-compare``, ``swarm-latest``) at the run folder
    ``name`` beside it; ``False`` when the file system refused (the run goes on without the link)."""
    path = Path(results_root) / link
    try:
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(name)
    except OSError:
        return False
    return True


def note_scratch(run_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Mark ``path`` (inside ``run_dir``; a ``*`` pattern is allowed) as scratch removed at the run's end.

    Raises ``ValueError`` for a path outside the run directory: only what a run created inside its
    own folder is ever deleted.
    """
    base = Path(run_dir).resolve()
    target = Path(path)
    if not target.is_absolute():
        target = base / target
    parent = target.parent.resolve()
    try:
        rel = (parent / target.name).relative_to(base)
    except ValueError:
        raise ValueError(f"scratch {str(path)!r} is outside the run directory {base}") from None
    if str(rel) in ("", "."):
        raise ValueError("the run directory itself is not scratch")
    line = str(rel) + "\n"
    listing = base / SCRATCH_LIST
    if listing.exists() and line in listing.read_text(encoding="utf-8").splitlines(keepends=True):
        return
    # O_APPEND: processes of one run (pabot) add lines without overwriting each other
    fd = os.open(listing, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def scratch_paths(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The existing scratch paths of a run (patterns expanded), never anything outside it."""
    base = Path(run_dir).resolve()
    try:
        lines = (base / SCRATCH_LIST).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found: list[Path] = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or Path(line).is_absolute() or ".." in Path(line).parts:
            continue
        for path in sorted(base.glob(line)) if any(c in line for c in "*?[") else [base / line]:
            if path.is_symlink() or not path.exists() or path in found:
                continue
            try:
                path.resolve().relative_to(base)
            except ValueError:
                continue
            found.append(path)
    return found


@dataclass
class Cleanup:
    """What :func:`remove_scratch` and :func:`compress_logs` did to a run directory."""

    run_dir: Path
    size_before: int = 0
    size_after: int = 0
    removed: list[str] = field(default_factory=list)
    compressed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    label: str = "run directory"

    def summary(self) -> str:
        """One line: sizes before and after, what went, how long it took."""
        text = (f"{self.label} {self.size_after / MB:.1f} MB (was {self.size_before / MB:.1f} MB; removed "
                f"{len(self.removed)} scratch folder(s), compressed {len(self.compressed)} log(s) in "
                f"{self.elapsed_s:.1f} s)")  # fmt: skip
        if self.problems:
            text += f"; {len(self.problems)} problem(s): {self.problems[0]}"
        return text


def remove_scratch(run_dir: str | os.PathLike[str], *, compress: bool = True) -> Cleanup:
    """Delete a finished run's scratch data and (with ``compress``) gzip its large logs.

    Call it only when nothing measures any more: deleting many files slows file creation for a
    while on some file systems. Problems (a file that will not go) are collected, never raised.
    """
    started = time.monotonic()
    base = Path(run_dir).resolve()
    result = Cleanup(base, size_before=tree_size(base))
    for path in scratch_paths(base):
        errors = _remove(path)
        result.removed.append(str(path.relative_to(base)))
        result.problems.extend(errors[:3])
    if compress:
        result.compressed, problems = compress_logs(base)
        result.problems.extend(problems)
    result.size_after = tree_size(base)
    result.elapsed_s = time.monotonic() - started
    return result


def finish(directory: str | os.PathLike[str], *, keep: bool, runs: Iterable[str | os.PathLike[str]] = (),
           label: str = "run directory") -> str:  # fmt: skip
    """The end of a run: remove the scratch data of ``runs`` (default: ``directory`` itself, else each
    run inside it, e.g. a comparison's rounds) and compress their large logs, unless ``keep``
    (``--keep-data``); returns one line with the size of ``directory``.

    Call it once nothing measures any more (see the module doc). Problems are in the line, never raised.

    Example::

        print(finish("results/20261205-105118-4242", keep=False))
        # run directory 3.2 MB (was 14.6 MB; removed 1 scratch folder(s), compressed 1 log(s) in 0.2 s)
    """
    base = Path(directory).resolve()
    if keep:
        return f"{label} {tree_size(base) / MB:.1f} MB, scratch data kept (--keep-data)"
    started = time.monotonic()
    total = Cleanup(base, size_before=tree_size(base), label=label)
    for run in [Path(r) for r in runs] or [base]:
        if not run.is_dir():
            continue
        try:
            part = remove_scratch(run)
        except OSError as exc:
            total.problems.append(f"{run}: {exc}")
            continue
        total.removed += part.removed
        total.compressed += part.compressed
        total.problems += part.problems
    total.size_after = tree_size(base)
    total.elapsed_s = time.monotonic() - started
    return total.summary()


def _remove(path: Path) -> list[str]:
    """Delete a file or a tree; the problems met (a file gone meanwhile is none)."""
    errors: list[str] = []

    def note(_fn: object, failed: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            errors.append(f"{failed}: {exc}")

    if path.is_dir() and not path.is_symlink():
        rm = shutil.which("rm")
        if rm:  # twice as fast as shutil.rmtree on tens of thousands of small files; never follows links
            done = subprocess.run([rm, "-rf", "--", str(path)], capture_output=True, text=True, check=False)
            if done.returncode == 0 and not path.exists():
                return errors
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=note)
        else:
            shutil.rmtree(path, onerror=lambda fn, failed, info: note(fn, failed, info[1]))
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    return errors


def compress_logs(run_dir: str | os.PathLike[str], *, min_bytes: int = LOG_COMPRESS_MIN_BYTES) -> tuple[list[str], list[str]]:
    """Gzip every ``*.log`` under ``run_dir`` larger than ``min_bytes`` to ``*.log.gz``; (done, problems)."""
    base = Path(run_dir)
    done: list[str] = []
    problems: list[str] = []
    for path in sorted(base.rglob("*.log")):
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size < min_bytes:
                continue
            target = path.with_name(path.name + ".gz")
            tmp = path.with_name(path.name + ".gz.tmp")
            with open(path, "rb") as src, gzip.open(tmp, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, target)
            path.unlink()
            done.append(str(target.relative_to(base)))
        except OSError as exc:
            problems.append(f"{path}: {exc}")
    return done, problems


def run_directories(results_root: str | os.PathLike[str]) -> list[Path]:
    """Run directories directly under ``results_root``, oldest first (by modification time)."""
    root = Path(results_root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir()
            if p.is_dir() and not p.is_symlink() and any((p / m).exists() for m in RUN_MARKERS)]  # fmt: skip
    return sorted(runs, key=lambda p: (p.stat().st_mtime, p.name))


@dataclass
class Pruned:
    """What :func:`prune_runs` removed and kept."""

    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    freed: int = 0
    latest: str | None = None
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the console."""
        text = (f"removed {len(self.removed)} run director{'y' if len(self.removed) == 1 else 'ies'} "
                f"({self.freed / MB:.1f} MB), kept {len(self.kept)}; {HISTORY_FILE} kept")  # fmt: skip
        if self.latest is not None:
            text += f"; latest -> {self.latest}"
        if self.problems:
            text += f"; {len(self.problems)} problem(s): {self.problems[0]}"
        return text


def prune_runs(results_root: str | os.PathLike[str], keep: int) -> Pruned:
    """Remove all but the ``keep`` newest run directories; ``history.jsonl`` stays, ``latest`` stays valid.

    Only folders that hold a run (:data:`RUN_MARKERS`) are touched; other files (the history, the
    README, libdoc output) never are. Raises ``ValueError`` for a negative ``keep``.
    """
    if keep < 0:
        raise ValueError(f"KEEP must be 0 or more, got {keep}")
    root = Path(results_root)
    runs = run_directories(root)
    doomed = runs[: max(0, len(runs) - keep)]
    result = Pruned(kept=[p.name for p in runs[len(doomed) :]])
    for path in doomed:
        size = tree_size(path)
        errors = _remove(path)
        if path.exists():
            result.problems.extend(errors[:1] or [f"{path}: still there"])
            result.kept.insert(0, path.name)
        else:
            result.removed.append(path.name)
            result.freed += size
    latest = root / LATEST
    if latest.is_symlink() and not latest.exists():
        latest.unlink()
        if result.kept:
            latest.symlink_to(result.kept[-1])
    if latest.is_symlink():
        result.latest = os.readlink(latest)
    for link in root.iterdir():  # e.g. latest-compare pointing at a removed comparison
        if link.is_symlink() and not link.exists():
            link.unlink()
    return result
