"""lossyfs: a FUSE passthrough whose "disk" only ever holds what was fsync'd.

    python -m tests.lanes.powercut.lossyfs BACKING_DIR MOUNTPOINT     (runs in the foreground)

Writes and truncations go into an in-memory page cache, one per file (4 KiB page images plus
the file's logical size); reads see that cache, so while the power is on the mount behaves
like any file system. Only `fsync`/`fdatasync` on a file copies its cached pages and size to
the backing file. `flush` and `release` (close) persist nothing: data written and closed but
never synced is still only in the cache, as in a real kernel's page cache.

SIGUSR1 is the power cut: under the lock that every operation holds, the process exits at
once without writing anything, so what the backing directory holds afterwards is exactly
what was fsync'd (operations are atomic with respect to the cut). The mount is left dead; the
caller unmounts it (`fusermount -u -z`). A clean unmount also drops unsynced data: the
invariant is always "backing = synced".

Kernel caching: every file except SQLite's `-shm` is opened with `direct_io`, so each read
and write reaches this process and the kernel keeps no copy of its own. The `-shm` (the WAL
index) must be mmap-able, which libfuse 2 does not allow with `direct_io`; it goes through
the kernel page cache (write-through, so its writes still land here) and is never needed
after a crash: SQLite rebuilds it from the WAL. Attribute and entry caching are off.

Namespace operations (create, mkdir, unlink, rename, chmod) are applied to the backing
directory at once, i.e. durable immediately, like a journalling file system that commits
metadata before data; a directory fsync is therefore a no-op here. What this model does not
capture (reordering or partial persistence *within* one fsync, torn sectors, lost metadata,
drives that lie about flushes) is listed in tests/lanes/test_powercut.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from fuse import FUSE, Operations

PAGE = 4096


class Unsynced:
    """The page cache of one file: page images, the logical size, and how much of the backing
    file is still valid (a truncation below it makes the tail read as zeros until synced)."""

    __slots__ = ("durable", "pages", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.durable = size  # bytes [0, durable) of the backing file are still current
        self.pages: dict[int, bytearray] = {}


class LossyFS(Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, backing: str) -> None:
        self.root = os.path.realpath(backing)
        self._mutex = threading.Lock()
        self.cache: dict[str, Unsynced] = {}
        self.fsyncs = 0

    def __call__(self, op: str, *args: Any) -> Any:
        with self._mutex:  # one operation at a time; the power cut takes the same lock
            return super().__call__(op, *args)

    def _real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    # -- the page cache ------------------------------------------------------------------

    def _unsynced(self, path: str) -> Unsynced:
        u = self.cache.get(path)
        if u is None:
            u = self.cache[path] = Unsynced(os.stat(self._real(path)).st_size)
        return u

    def _disk(self, fd: int, u: Unsynced, offset: int, size: int) -> bytes:
        """Backing bytes [offset, offset+size) as the cache sees them: zeros past `durable`."""
        valid = max(0, min(size, u.durable - offset))
        data = os.pread(fd, valid, offset) if valid else b""
        return data + bytes(size - len(data))

    def _truncate(self, path: str, length: int) -> None:
        u = self._unsynced(path)
        if length < u.size:
            for pno in [p for p in u.pages if p * PAGE >= length]:
                del u.pages[pno]
            pno, off = divmod(length, PAGE)
            if off and pno in u.pages:
                u.pages[pno][off:] = bytes(PAGE - off)
            u.durable = min(u.durable, length)
        u.size = length

    def _persist(self, path: str) -> None:
        u = self.cache.pop(path, None)
        if u is None:
            return
        fd = os.open(self._real(path), os.O_WRONLY)
        try:
            os.ftruncate(fd, u.durable)  # a synced truncation, before the pages beyond it
            for pno, page in sorted(u.pages.items()):
                start = pno * PAGE
                if start < u.size:
                    os.pwrite(fd, page[: u.size - start], start)
            os.ftruncate(fd, u.size)
        finally:
            os.close(fd)
        # No os.fsync of the backing file: the host does not lose power, only this "disk".

    def power_cut(self) -> None:
        with self._mutex:
            pages = sum(len(u.pages) for u in self.cache.values())
            files = ", ".join(f"{p.lstrip('/')}={len(u.pages)}" for p, u in self.cache.items())
            print(
                f"lossyfs: power cut after {self.fsyncs} fsyncs: dropped {pages} unsynced"
                f" pages in {len(self.cache)} files: {files}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(0)  # nothing below this line runs: no flush, no unmount, no persist

    # -- files ---------------------------------------------------------------------------

    def _open_backing(self, path: str, fi: Any, flags: int, mode: int = 0) -> int:
        fd = os.open(self._real(path), os.O_RDWR | (flags & os.O_CREAT), mode)
        fi.fh = fd
        fi.direct_io = not path.endswith("-shm")
        fi.keep_cache = 0
        if flags & os.O_TRUNC:
            self._truncate(path, 0)
        return 0

    def open(self, path: str, fi: Any) -> int:
        return self._open_backing(path, fi, fi.flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self.cache.pop(path, None)
        return self._open_backing(path, fi, fi.flags | os.O_CREAT, mode)

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        u = self.cache.get(path)
        if u is None:
            return os.pread(fi.fh, size, offset)
        end = min(offset + size, u.size)
        out = bytearray()
        pos = offset
        while pos < end:
            pno, off = divmod(pos, PAGE)
            n = min(PAGE - off, end - pos)
            page = u.pages.get(pno)
            out += page[off : off + n] if page is not None else self._disk(fi.fh, u, pos, n)
            pos += n
        return bytes(out)

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        u = self._unsynced(path)
        pos, i = offset, 0
        while i < len(data):
            pno, off = divmod(pos, PAGE)
            n = min(PAGE - off, len(data) - i)
            page = u.pages.get(pno)
            if page is None:
                page = u.pages[pno] = bytearray(self._disk(fi.fh, u, pno * PAGE, PAGE))
            page[off : off + n] = data[i : i + n]
            pos += n
            i += n
        u.size = max(u.size, offset + len(data))
        return len(data)

    def truncate(self, path: str, length: int, fi: Any = None) -> int:
        self._truncate(path, length)
        return 0

    def fsync(self, path: str, datasync: int, fi: Any) -> int:
        self.fsyncs += 1
        self._persist(path)
        return 0

    def flush(self, path: str, fi: Any) -> int:
        return 0  # close() is not a sync: the point of this file system

    def release(self, path: str, fi: Any) -> int:
        os.close(fi.fh)
        return 0

    def getattr(self, path: str, fi: Any = None) -> dict[str, int]:
        st = os.lstat(self._real(path))
        attrs = {
            k: getattr(st, k)
            for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks")
        }
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        u = self.cache.get(path)
        if u is not None:
            attrs["st_size"] = u.size
            attrs["st_blocks"] = (u.size + 511) // 512
        return attrs

    # -- namespace: applied to the backing directory at once -----------------------------

    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        self.cache.pop(path, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._real(old), self._real(new))
        moved = {}
        for key in list(self.cache):
            if key == new or key.startswith(new + "/"):
                del self.cache[key]  # the replaced file's unsynced data goes with it
        for key in list(self.cache):
            if key == old or key.startswith(old + "/"):
                moved[new + key[len(old) :]] = self.cache.pop(key)
        self.cache.update(moved)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._real(path))
        return {
            k: getattr(sv, k)
            for k in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }


def main(argv: list[str]) -> None:
    backing, mountpoint = argv
    fs = LossyFS(backing)
    # Python runs signal handlers only on the main thread, which sits inside libfuse's C loop;
    # so block SIGUSR1 everywhere and take it on a thread of our own with sigwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    def wait_for_cut() -> None:
        signal.sigwait({signal.SIGUSR1})
        fs.power_cut()

    threading.Thread(target=wait_for_cut, name="power", daemon=True).start()
    FUSE(
        fs,
        mountpoint,
        raw_fi=True,
        foreground=True,
        nothreads=True,
        fsname="lossyfs",
        big_writes=True,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
