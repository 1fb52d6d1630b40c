"""Drive lossyfs from a test: mount it in a child process, cut the power, unmount."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


class MountError(RuntimeError):
    pass


def fuse_unavailable() -> str | None:
    """Why lossyfs cannot run here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    if shutil.which("fusermount") is None:
        return "fusermount not found (Debian package: fuse)"
    try:
        import fuse  # noqa: F401
    except ImportError:
        return "fusepy is not installed (pip: fusepy)"
    except OSError as exc:  # fusepy raises EnvironmentError when libfuse.so.2 is missing
        return f"libfuse2 cannot be loaded ({exc}; Debian package: libfuse2)"
    return None


def _mounted(mountpoint: Path) -> bool:
    # Not os.path.ismount: a mount whose daemon has died fails stat (ENOTCONN) yet is mounted.
    target = str(mountpoint).replace(" ", "\\040")
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


class LossyMount:
    """One "power-on" of lossyfs: `mount()`, then either `cut()` or `unmount()`."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path) -> None:
        self.backing, self.mountpoint, self.log_path = backing, mountpoint, log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def mount(self, timeout: float = 10) -> None:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.lanes.powercut.lossyfs",
                    str(self.backing),
                    str(self.mountpoint),
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.unmount()
                raise MountError(f"lossyfs did not mount: {self.log()}")
            time.sleep(0.005)

    def signal_cut(self) -> None:
        """The power goes off now: lossyfs drops every unsynced write and exits."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)

    def finish_cut(self) -> dict[str, int]:
        """Wait for the cut and unmount the dead mount; returns the unsynced pages dropped,
        per file (a file that was only truncated counts 0)."""
        assert self.proc is not None
        self.proc.wait(10)
        self._fusermount()
        m = re.search(r"dropped \d+ unsynced pages in \d+ files: (.*)", self.log())
        assert self.proc.returncode == 0 and m, f"lossyfs did not report the cut: {self.log()}"
        return {k: int(v) for k, v in re.findall(r"([^ ,=]+)=(\d+)", m.group(1))}

    def cut(self) -> dict[str, int]:
        self.signal_cut()
        return self.finish_cut()

    def unmount(self) -> None:
        """Unmount (unsynced data is dropped here too) and make sure the daemon is gone."""
        self._fusermount()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def _fusermount(self) -> None:
        if _mounted(self.mountpoint):
            subprocess.run(
                ["fusermount", "-u", "-z", str(self.mountpoint)],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
            )
        assert not _mounted(self.mountpoint), f"{self.mountpoint} is still mounted"

    def log(self) -> str:
        """What this mount's daemon printed."""
        with contextlib.suppress(OSError), self.log_path.open("rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")[-3000:]
        return ""
