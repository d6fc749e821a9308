"""Crash-safe folder replacement with recovery at startup, and a self-cleaning folder for generated downloads."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

COMPLETE = ".complete"  # written last inside a new folder: its presence proves every other file is whole


def _tmp(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp")


def _old(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the renames are still ordered
    finally:
        os.close(fd)


def replace_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Write a new version of the folder `final` with `write(tmp)`, then swap it in.

    Two renames cannot be one atomic step, so each state in between is recoverable by `recover_dir`: the new
    folder is marked complete before the old one moves, and the old one is deleted only after the new one is in place.
    A failing `write` leaves the old folder untouched and no temporary folder behind.
    """
    tmp, old = _tmp(final), _old(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        (tmp / COMPLETE).write_bytes(b"")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk must not also leave half a folder lying around
        raise
    _fsync_dir(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return final


def is_complete(folder: Path) -> bool:
    """True when `folder` was fully written by replace_dir."""
    return (folder / COMPLETE).exists()


def recover_dir(final: Path) -> str:
    """Finish or undo a swap that a killed process left half done; returns what was done ('' when nothing).

    Call it only for folders no live process is writing.
    """
    tmp, old = _tmp(final), _old(final)
    done = ""
    if not final.exists():
        if tmp.exists() and is_complete(tmp):
            tmp.rename(final)  # killed between the two renames: the new version was whole
            done = f"restored {final.name} from its complete new copy"
        elif old.exists():
            old.rename(final)  # the new version was not whole: keep the previous one
            done = f"restored {final.name} from its previous copy"
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)
            done = done or f"removed a half-written copy of {final.name}"
    if done:
        log.warning("%s: %s", final.parent.name, done)
    return done


class DownloadFolder:
    """Generated files (batch predictions) in one folder with a byte budget: entries older than `max_age_s` are
    deleted on each use, and the oldest go first while the folder is over `max_bytes`, so anonymous calls cannot fill
    the disk; one file may take at most a quarter of the budget (a larger one is refused). Gradio serves its own
    copy, so the original can go early."""

    def __init__(self, root: Path | None = None, max_age_s: float = 3600.0, max_bytes: int = 512 * 2**20) -> None:
        self.root = root or Path(tempfile.gettempdir()) / "ftui-downloads"
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def sweep(self) -> int:
        """Delete entries older than max_age_s; returns how many went."""
        if not self.root.exists():
            return 0
        cutoff, gone = time.time() - self.max_age_s, 0
        for entry in self.root.iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                    gone += 1
            except OSError as exc:  # another process swept it first, or it is not ours to delete
                log.info("could not sweep %s: %s", entry, exc)
        return gone

    def new_path(self, name: str) -> Path:
        """A fresh path for a file called `name` (in its own subfolder, so names never clash), after a sweep."""
        self.sweep()
        folder = self.root / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder / name

    def write(self, name: str, write: Callable[[Path], None]) -> Path:
        """A new file written by `write(path)` within the budget: the oldest entries are evicted to make room; a file
        larger than a quarter of the budget is deleted and refused (FileTooLarge)."""
        path = self.new_path(name)
        try:
            write(path)
            size = path.stat().st_size
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        if size > self.max_bytes // 4:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise FileTooLarge(size, self.max_bytes // 4)
        with self._lock:
            self._evict(keep=path.parent)
        return path

    def _evict(self, keep: Path) -> None:
        entries = []
        for entry in self.root.iterdir():
            try:
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file()) if entry.is_dir() else entry.stat().st_size
                entries.append((entry.stat().st_mtime, entry, size))
            except OSError:
                continue  # swept meanwhile
        total = sum(size for _, _, size in entries)
        for _, entry, size in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if entry == keep:
                continue
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            total -= size


class FileTooLarge(Exception):
    """A generated file would take more than its share of the downloads folder's byte budget."""

    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"{size / 2**20:.1f} MB is over the {limit / 2**20:.1f} MB one download may take")
