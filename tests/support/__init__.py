"""Helpers shared by the test lanes: a gateway in a child process, free ports, HTTP calls."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 5
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class ChildServer:
    """A server as a child process on 127.0.0.1, ready once `GET /api/v2` answers 200 (the
    gateway and the benchmarks' bare aiohttp ceiling are started and probed the same way)."""

    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self, **env: str) -> dict[str, str]:
        return {**os.environ, **env}

    def start(self, timeout: float = 15, **env: str) -> float:
        """Start and wait until /api/v2 answers; returns seconds from spawn to ready."""
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{self.port}.log"
        t0 = time.monotonic()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.environment(**env), stdout=log, stderr=log
        )
        log.close()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.command()[1]} exited {self.proc.returncode}: {self.log()}"
                )
            try:
                status, _ = http("GET", f"{self.url}/api/v2", timeout=0.5)
                if status == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"not ready in {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)


@dataclass
class GatewayProcess(ChildServer):
    """`tablegate serve` as a child process on 127.0.0.1 with its own data directory."""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def environment(self, **env: str) -> dict[str, str]:
        defaults = {
            "TABLEGATE_DATA_DIR": str(self.data_dir),
            "TABLEGATE_MDNS_ENABLED": "false",
            "TABLEGATE_LOG_LEVEL": "WARNING",
        }
        return super().environment(**{**defaults, **env})  # the caller's values win

    def token(self, name: str = "test") -> str:
        """Open the window the way the CLI does, then take a token through it."""
        cookie = (self.data_dir / "admin.cookie").read_text().strip()
        status, _ = http("POST", f"{self.url}/api/admin/token-window", token=cookie)
        assert status == 200
        status, body = http("GET", f"{self.url}/api/v2/accesstoken/generate?name={name}")
        assert status == 201, body
        return str(body["token"]["token"])
