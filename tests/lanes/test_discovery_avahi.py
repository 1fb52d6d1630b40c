"""Interop with an independent mDNS stack: avahi-daemon in a network namespace of our own.

The namespace has only `lo` up, so nothing reaches the machine's real network. A private
dbus-daemon serves avahi and its command-line tools; the Advertiser runs as a subprocess inside
the same namespace. Needs root and the Debian packages avahi-daemon, avahi-utils, dbus, iproute2.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOOLS = ("ip", "dbus-daemon", "avahi-daemon", "avahi-browse", "avahi-publish")
TRACKER = "_tracker-http._tcp"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

ADVERTISER = textwrap.dedent(
    """
    import asyncio, json, sys
    from gateway.discovery import Advertiser

    async def main() -> None:
        port, gateway_id, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        advertiser = Advertiser(
            port=port, gateway_id=gateway_id, version="9.9", instance_name=name,
            interfaces=["127.0.0.1"], service_types=("_tracker-http._tcp.local.",),
        )
        await advertiser.start()
        print(json.dumps(advertiser.registered), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await advertiser.stop()
        print("stopped", flush=True)

    asyncio.run(main())
    """
)


class Proc:
    """A subprocess whose merged output is read line by line, each wait bounded."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, matches: Callable[[str], bool], timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if matches(line):
                return line
        output = "\n".join(self.lines)
        raise AssertionError(f"{self.argv[3:]} never printed the expected line; output:\n{output}")

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()


@dataclass
class Namespace:
    name: str
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, *argv: str) -> Proc:
        proc = Proc(["ip", "netns", "exec", self.name, *argv], self.env)
        self.procs.append(proc)
        return proc

    def advertiser(self, port: int, gateway_id: str, instance: str) -> Proc:
        return self.spawn(sys.executable, "-c", ADVERTISER, str(port), gateway_id, instance)


def private_bus_config(socket_path: Path) -> str:
    """The system bus policy (which lets root own org.freedesktop.Avahi), on our own socket."""
    config = Path("/usr/share/dbus-1/system.conf").read_text()
    for dropped in ("user", "pidfile", "servicehelper"):
        config = re.sub(rf"\s*<{dropped}>.*?</{dropped}>", "", config)
    for dropped in ("fork", "syslog", "standard_system_servicedirs"):
        config = config.replace(f"<{dropped}/>", "")
    config = re.sub(r"<listen>.*?</listen>", f"<listen>unix:path={socket_path}</listen>", config)
    # Relative include dirs resolve against the config file, which now lives in a temp dir.
    return config.replace(
        "<includedir>system.d</includedir>", "<includedir>/usr/share/dbus-1/system.d</includedir>"
    )


@pytest.fixture(scope="module")
def avahi_namespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    """One namespace with dbus and avahi for the module; each test's own processes end with it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (scripts/system-deps.sh installs them)")
    name = f"tgdisc-{uuid.uuid4().hex[:10]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    tmp = tmp_path_factory.mktemp("avahi")
    bus = tmp / "bus"
    pythonpath = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}", "PYTHONPATH": pythonpath}
    ns = Namespace(name, env)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        (tmp / "bus.conf").write_text(private_bus_config(bus))
        (tmp / "avahi.conf").write_text(
            f"[server]\nhost-name={name}\nuse-ipv4=yes\nuse-ipv6=no\n"
            "allow-interfaces=lo\nenable-dbus=yes\n"
            "[publish]\npublish-hinfo=no\npublish-workstation=no\n"
        )
        ns.spawn("dbus-daemon", f"--config-file={tmp / 'bus.conf'}", "--nofork")
        deadline = time.monotonic() + 10
        while not bus.exists():
            assert time.monotonic() < deadline, "private dbus-daemon never made its socket"
            time.sleep(0.05)
        # `ip netns exec` gives a private mount namespace: a tmpfs on /run there keeps avahi's
        # fixed pid file away from the host's (and from a daemon the host may be running).
        avahi = ns.spawn(
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /run && mkdir /run/avahi-daemon && exec avahi-daemon"
            f" -f {tmp / 'avahi.conf'} --no-chroot --no-drop-root --no-rlimits",
        )
        avahi.expect(lambda line: "Server startup complete" in line)
        yield ns
    finally:
        for proc in reversed(ns.procs):
            proc.stop()
        subprocess.run(["ip", "netns", "del", name], timeout=10)


@pytest.fixture
def netns(avahi_namespace: Namespace) -> Iterator[Namespace]:
    first = len(avahi_namespace.procs)
    yield avahi_namespace
    for proc in reversed(avahi_namespace.procs[first:]):
        proc.stop()
    del avahi_namespace.procs[first:]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def resolved(line: str, instance: str) -> bool:
    # avahi-browse -p: "=;iface;proto;name;type;domain;host;address;port;txt..."
    return line.startswith(f"=;lo;IPv4;{instance};{TRACKER};local;")


def test_avahi_resolves_the_registration_and_sees_the_goodbye(netns: Namespace) -> None:
    instance, gateway_id = unique("tg-avahi"), unique("gw")
    browse = netns.spawn("avahi-browse", "-p", "-r", TRACKER)
    advertiser = netns.advertiser(8180, gateway_id, instance)
    registered = json.loads(advertiser.expect(lambda line: line.startswith("["), 15))
    assert registered == [f"{instance}.{TRACKER}.local."]

    line = browse.expect(lambda line: resolved(line, instance))
    host, address, port, txt = line.split(";", 9)[6:]
    assert (host, address, port) == (f"tablegate-{gateway_id}.local", "127.0.0.1", "8180")
    assert set(re.findall(r'"([^"]*)"', txt)) == {
        "api=v2",
        "path=/api/v2",
        f"id={gateway_id}",
        "version=9.9",
    }

    advertiser.send("\n")
    advertiser.expect(lambda line: line == "stopped")
    # avahi drops it on the goodbye; without one it would keep the record for its whole TTL.
    browse.expect(lambda line: line.startswith(f"-;lo;IPv4;{instance};{TRACKER};"), 5)


def test_name_held_by_avahi_is_renamed(netns: Namespace) -> None:
    instance = unique("tg-avahi")
    holder = netns.spawn("avahi-publish", "-s", instance, TRACKER, "9999")
    holder.expect(lambda line: line == f"Established under name '{instance}'")

    advertiser = netns.advertiser(8181, unique("gw"), instance)
    registered = json.loads(advertiser.expect(lambda line: line.startswith("["), 15))
    assert registered == [f"{instance}-2.{TRACKER}.local."]

    browse = netns.spawn("avahi-browse", "-p", "-r", TRACKER)
    ports: dict[str, str] = {}

    def both_resolved(line: str) -> bool:
        if resolved(line, instance) or resolved(line, f"{instance}-2"):
            fields = line.split(";")
            ports[fields[3]] = fields[8]
        return len(ports) == 2

    browse.expect(both_resolved)
    assert ports == {instance: "9999", f"{instance}-2": "8181"}
    advertiser.send("\n")
    advertiser.expect(lambda line: line == "stopped")
