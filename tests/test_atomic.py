"""Atomic writes: the user's umask applies, temporary files of dead writers are removed."""

import os
import stat
import subprocess
import sys

import pytest
import torch.nn as nn

import asymlora
from asymlora import atomic
from asymlora.atomic import atomic_write_bytes, atomic_write_json, clean_stale


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)
    previous = os.umask(0o022)
    yield set_mask
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_json(tmp_path / "b.json", {"k": 1})
    net = nn.Sequential(nn.Linear(4, 4))
    asymlora.inject(net, asymlora.AdapterConfig.preset("b-only", rank=2, targets=["0"]))
    asymlora.save_adapter(net, tmp_path / "adapter")
    asymlora.export_peft(net, tmp_path / "peft")
    files = [tmp_path / "a.bin", tmp_path / "b.json", *(tmp_path / "adapter").iterdir(), *(tmp_path / "peft").iterdir()]
    assert len(files) == 6
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f


def test_temporary_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = atomic._HOST
    stale = tmp_path / f".out.json.{host}.{dead_pid}-00ff00ff.tmp"
    live = tmp_path / f".out.json.{host}.{os.getppid()}-00ff00ff.tmp"  # the parent process is alive
    other = tmp_path / f".other.json.{host}.{dead_pid}-00ff00ff.tmp"  # another target's: not this write's business
    for f in (stale, live, other):
        f.write_bytes(b"partial")
    assert clean_stale(tmp_path, "out.json") == [stale]
    atomic_write_json(tmp_path / "out.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "out.json"])
