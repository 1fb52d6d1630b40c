"""The first line every benchmark prints: what machine, how loaded, which versions."""

from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path

import aiohttp


def machine_line(extra: str) -> str:
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (
        f"machine: nproc {os.cpu_count()} | load {' '.join(load)} | Python "
        f"{platform.python_version()} aiohttp {aiohttp.__version__} sqlite "
        f"{sqlite3.sqlite_version} | {extra}"
    )
