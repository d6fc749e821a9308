"""Crash-safe folder swaps (a real kill -9 at each step, then recovery) and the self-cleaning download folder."""

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO

from ftui.files import COMPLETE, DownloadFolder, recover_dir, replace_dir

CHILD = """
import os, signal, sys
from pathlib import Path
from ftui import files

final, kill_at = Path(sys.argv[1]), int(sys.argv[2])
renames = [0]
real = Path.rename

def rename(self, target):
    renames[0] += 1
    if renames[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies here, as a kill -9 or a power cut would
    return real(self, target)

Path.rename = rename
real_rmtree = files.shutil.rmtree
def rmtree(path, *a, **k):
    if kill_at == 3 and Path(path).name.endswith(".old") and Path(path).exists():
        os.kill(os.getpid(), signal.SIGKILL)  # after both renames, before the old copy is gone
    return real_rmtree(path, *a, **k)
files.shutil.rmtree = rmtree

def write(tmp):
    (tmp / "weights").write_text("new")
files.replace_dir(final, write)
"""


def make_version(final, text: str) -> None:
    replace_dir(final, lambda tmp: (tmp / "weights").write_text(text))


@pytest.mark.parametrize("kill_at", [1, 2, 3])
def test_a_kill_at_any_step_of_a_swap_leaves_one_whole_version(tmp_path, kill_at):
    final = tmp_path / "model"
    make_version(final, "old")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(final), str(kill_at)], env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    if kill_at == 2:
        assert not final.exists()  # the gap the issue found: between the two renames there is no model/
    recover_dir(final)
    assert final.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # killed before the first rename: the old version; after it, the new one was complete and wins
    assert (final / "weights").read_text() == ("old" if kill_at == 1 else "new")


def test_a_failed_write_keeps_the_old_version_and_leaves_nothing(tmp_path):
    final = tmp_path / "model"
    make_version(final, "old")

    def full_disk(tmp):
        (tmp / "weights").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        replace_dir(final, full_disk)
    assert (final / "weights").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_incomplete_new_copy_is_not_trusted(tmp_path):
    final = tmp_path / "model"
    make_version(final, "old")
    final.rename(tmp_path / ".model.old")
    (tmp_path / ".model.tmp").mkdir()
    (tmp_path / ".model.tmp" / "weights").write_text("half")  # no .complete marker: the writer died mid-write
    assert "previous copy" in recover_dir(final)
    assert (final / "weights").read_text() == "old" and (final / COMPLETE).exists()
    assert recover_dir(final) == ""  # nothing left to do


def test_download_folder_sweeps_old_files(tmp_path):
    folder = DownloadFolder(tmp_path / "downloads", max_age_s=60)
    first = folder.new_path("predictions.csv")
    first.write_text("a,b\n")
    old = time.time() - 120
    os.utime(first.parent, (old, old))
    second = folder.new_path("predictions.csv")
    assert second != first and not first.parent.exists() and second.parent.exists()


def test_downloads_keep_a_byte_budget_evicting_the_oldest_and_refusing_one_too_large(tmp_path):
    from ftui.files import FileTooLarge

    folder = DownloadFolder(tmp_path / "downloads", max_age_s=3600, max_bytes=4000)
    paths = [folder.write(f"p{i}.csv", lambda p: p.write_bytes(b"x" * 900)) for i in range(4)]  # 3,600 bytes
    for i, p in enumerate(paths):  # oldest first: give each its own mtime, as files written over time have
        os.utime(p.parent, (time.time() - 100 + i, time.time() - 100 + i))
    newest = folder.write("p4.csv", lambda p: p.write_bytes(b"x" * 900))  # 4,500 bytes: over budget
    left = sorted(f.name for f in folder.root.rglob("*.csv"))
    total = sum(f.stat().st_size for f in folder.root.rglob("*") if f.is_file())
    assert total <= 4000 and newest.exists() and left == ["p1.csv", "p2.csv", "p3.csv", "p4.csv"], left
    with pytest.raises(FileTooLarge, match="over the 0.0 MB"):
        folder.write("big.csv", lambda p: p.write_bytes(b"x" * 1001))  # over a quarter of the budget
    assert not list(folder.root.rglob("big.csv"))  # refused files are not left behind
