"""File-change notification for the reference conductor: ONE inotify instance for the whole server.

``fs.inotify.max_user_instances`` is 128 on the test machines, so a watcher per SSE subscriber (the
real server's design) does not scale. :class:`WatchHub` owns a single inotify file descriptor (via
``ctypes``: ``inotify_init1``/``inotify_add_watch``), registered with the event loop through
``loop.add_reader``, and fans events out to callbacks keyed by directory. Several callbacks may
watch one directory; the kernel watch is removed when the last one goes.

When inotify is not available, or a directory cannot be watched (it does not exist yet, or the
watch limit is reached), that directory is stat-polled instead -- only while someone watches it,
so an idle server with no streams polls nothing.

Callbacks receive the changed entry's name (``None`` = "anything may have changed", e.g. after a
queue overflow) and are called at most once per name per batch of events.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

DEFAULT_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB
_EVENT = struct.Struct("iIII")

Callback = Callable[[str | None], None]


class Inotify:
    """A thin ctypes wrapper of one non-blocking inotify instance."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(name, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = fd

    def add_watch(self, path: str, mask: int) -> int:
        """Add (or replace) the watch on ``path``; returns its watch descriptor."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), ctypes.c_uint32(mask | IN_ONLYDIR))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return wd

    def rm_watch(self, wd: int) -> None:
        """Remove a watch (errors ignored: the kernel may have dropped it already)."""
        self._libc.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[tuple[int, int, str]]:
        """All queued events as ``(wd, mask, name)``; empty when none are pending."""
        events: list[tuple[int, int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 256 * 1024)
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            pos = 0
            end = len(data)
            while pos + 16 <= end:
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += 16
                name = data[pos:pos + length].rstrip(b"\0").decode("utf-8", "surrogateescape") if length else ""
                pos += length
                events.append((wd, mask, name))
            if end < 128 * 1024:  # a short read means the queue is drained
                return events

    def close(self) -> None:
        """Close the descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(eq=False)
class Watch:
    """One registration returned by :meth:`WatchHub.watch`.

    ``ok`` is false when the directory could not be watched and ``fallback`` was off (the caller
    must then look for changes itself).
    """

    path: str
    callback: Callback
    mask: int
    fallback: bool = True
    ok: bool = True


@dataclass(eq=False)
class _Dir:
    path: str
    watches: list[Watch] = field(default_factory=list)
    wd: int = -1
    mask: int = 0
    snapshot: dict[str, tuple[int, int, int]] | None = None


def _scan(path: str) -> dict[str, tuple[int, int, int]] | None:
    try:
        with os.scandir(path) as it:
            out = {}
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                out[entry.name] = (st.st_ino, st.st_size, st.st_mtime_ns)
            return out
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None


class WatchHub:
    """Directory watches for the whole server (one inotify fd), with a stat-polling fallback."""

    def __init__(self, poll_interval_s: float = 0.025, *, use_inotify: bool = True) -> None:
        self.poll_interval_s = poll_interval_s
        self._use_inotify = use_inotify
        self._ino: Inotify | None = None
        self._dirs: dict[str, _Dir] = {}
        self._by_wd: dict[int, _Dir] = {}
        self._polled: set[str] = set()
        self._poll_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.overflows = 0
        self.inotify_error: str = ""

    @property
    def using_inotify(self) -> bool:
        """Whether the inotify instance is active."""
        return self._ino is not None

    def start(self) -> None:
        """Create the inotify instance (or record why not) inside the running loop."""
        self._loop = asyncio.get_running_loop()
        if self._use_inotify and self._ino is None:
            try:
                self._ino = Inotify()
            except (OSError, AttributeError) as exc:
                self.inotify_error = str(exc)
                self._ino = None
            else:
                self._loop.add_reader(self._ino.fd, self._on_readable)

    def close(self) -> None:
        """Drop every watch and the inotify instance."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            self._poll_task = None
        if self._ino is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._ino.fd)
            self._ino.close()
            self._ino = None
        self._dirs.clear()
        self._by_wd.clear()
        self._polled.clear()

    # ------------------------------------------------------------------ registration

    def watch(self, path: str, callback: Callback, mask: int = DEFAULT_MASK, *, fallback: bool = True) -> Watch:
        """Call ``callback(name)`` when an entry of directory ``path`` changes (until :meth:`unwatch`).

        With ``fallback`` (the default) a directory inotify cannot watch is stat-polled; without it
        the returned watch has ``ok`` false and nothing polls.
        """
        path = os.path.abspath(path)
        w = Watch(path, callback, mask, fallback)
        d = self._dirs.get(path)
        if d is None:
            d = self._dirs[path] = _Dir(path)
        d.watches.append(w)
        w.ok = self._arm(d) or fallback
        return w

    def unwatch(self, w: Watch) -> None:
        """Remove one registration."""
        d = self._dirs.get(w.path)
        if d is None:
            return
        try:
            d.watches.remove(w)
        except ValueError:
            return
        if d.watches:
            self._arm(d)
            return
        del self._dirs[w.path]
        self._polled.discard(w.path)
        if d.wd >= 0 and self._ino is not None:
            self._by_wd.pop(d.wd, None)
            self._ino.rm_watch(d.wd)

    def _arm(self, d: _Dir) -> bool:
        """Make the kernel watch match the registrations; returns whether inotify watches ``d``."""
        mask = 0
        for w in d.watches:
            mask |= w.mask
        if self._ino is not None:
            if d.wd >= 0 and mask == d.mask:
                return True
            try:
                wd = self._ino.add_watch(d.path, mask)
            except OSError:
                pass
            else:
                if d.wd >= 0 and d.wd != wd:
                    self._by_wd.pop(d.wd, None)
                d.wd, d.mask = wd, mask
                self._by_wd[wd] = d
                self._polled.discard(d.path)
                return True
        if not any(w.fallback for w in d.watches):
            return False
        # polling fallback for this directory
        if d.path not in self._polled:
            d.snapshot = _scan(d.path)
            self._polled.add(d.path)
        if self._poll_task is None and self._loop is not None:
            self._poll_task = self._loop.create_task(self._poll())
        return False

    def counts(self) -> dict[str, int]:
        """Numbers for diagnostics: watched dirs, kernel watches, polled dirs."""
        return {"dirs": len(self._dirs), "inotify_watches": len(self._by_wd), "polled_dirs": len(self._polled)}

    # ------------------------------------------------------------------ events

    def drain(self) -> None:
        """Deliver events already queued in the kernel now (one non-blocking read when there are none)."""
        self._on_readable()

    def _on_readable(self) -> None:
        if self._ino is None:
            return
        try:
            events = self._ino.read()
        except OSError:
            return
        fired: dict[tuple[int, str | None], _Dir] = {}
        for wd, mask, name in events:
            if mask & IN_Q_OVERFLOW:
                self.overflows += 1
                for d in list(self._dirs.values()):
                    fired[(id(d), None)] = d
                continue
            d = self._by_wd.get(wd)
            if d is None:
                continue
            if mask & IN_IGNORED:
                # directory deleted or unmounted: fall back to polling until it comes back
                self._by_wd.pop(wd, None)
                d.wd = -1
                d.mask = 0
                if d.path in self._dirs:
                    self._arm(d)
                fired[(id(d), None)] = d
                continue
            fired[(id(d), name or None)] = d
        for (_, name), d in fired.items():
            for w in list(d.watches):
                try:
                    w.callback(name)
                except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                    pass

    async def _poll(self) -> None:
        try:
            while self._polled:
                await asyncio.sleep(self.poll_interval_s)
                for path in list(self._polled):
                    d = self._dirs.get(path)
                    if d is None:
                        self._polled.discard(path)
                        continue
                    if self._ino is not None:
                        self._arm(d)  # the directory may exist now
                        if d.wd >= 0:
                            for w in list(d.watches):
                                w.callback(None)
                            continue
                    snap = _scan(path)
                    old = d.snapshot
                    d.snapshot = snap
                    if snap == old:
                        continue
                    changed: list[str | None]
                    if snap is None or old is None:
                        changed = [None]
                    else:
                        changed = [n for n, s in snap.items() if old.get(n) != s]
                        changed += [n for n in old if n not in snap]
                    for name in changed:
                        for w in list(d.watches):
                            try:
                                w.callback(name)
                            except Exception:  # noqa: BLE001
                                pass
        finally:
            self._poll_task = None
