"""Issue 9 item 7b: restarting while the disk is still full.

The real thing: a 4 MiB tmpfs holds the data directory (mounting needs root: skipped with the
reason otherwise); the gateway runs as a child process, the disk is filled under it, it is
killed, and restarted on the full disk. Plus a unit test of the temp-file cleanup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.startup import storage_reason, write_durably
from tests.support import ROOT, GatewayProcess, free_port, http


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def test_a_restart_on_a_full_disk_says_what_is_full_and_leaves_no_temp_file(
    small_disk: Path,
) -> None:
    gw = GatewayProcess(small_disk / "data", free_port())
    try:
        gw.start()
        token = gw.token()
        for name in ("1", "2", "3"):
            status, _ = http(
                "POST",
                f"{gw.url}/api/v2/activeorders",
                {"name": name, "orderType": "TO_GO"},
                token=token,
            )
            assert status == 201
        filler = fill(small_disk)
        gw.kill(signal.SIGKILL)  # a crash on the full disk, then a restart on it
        result = subprocess.run(
            gw.command(),
            cwd=ROOT,
            env=gw.environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode != 0
        lines = [ln for ln in result.stderr.splitlines() if ln.startswith("tablegate:")]
        assert len(lines) == 1, result.stderr
        assert f"the file system holding {gw.data_dir} is full" in lines[0]
        assert "bytes free of" in lines[0] and "cannot serve on" not in lines[0]
        leftovers = [p.name for p in gw.data_dir.iterdir() if p.name.endswith(".tmp")]
        assert leftovers == []
        # Space back: it starts, with everything it had acknowledged.
        filler.unlink()
        gw.start()
        status, body = http("GET", f"{gw.url}/api/v2/activeorders", token=token)
        assert status == 200 and {o["name"] for o in body["items"]} == {"1", "2", "3"}
    finally:
        gw.kill()


def test_a_failed_durable_write_removes_its_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "admin.cookie"

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        write_durably(target, "secret", 0o600)
    assert list(tmp_path.iterdir()) == []


def test_storage_reason_names_a_full_disk_and_nothing_else(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    reason = storage_reason(tmp_path, full)
    assert reason is not None and str(tmp_path) in reason and "bytes free of" in reason
    assert storage_reason(tmp_path, OSError(errno.EACCES, "Permission denied")) is None
