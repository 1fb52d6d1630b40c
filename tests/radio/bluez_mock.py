"""A BlueZ the test plays: python-dbusmock's bluez5 template on a private system bus.

The real bleak BlueZ backend talks to it over real D-Bus. Quirks worked around here (see
/work/shared/reference/testing-peers.md): the template's ManufacturerData/ServiceData start as
arrays and are re-set as dicts before bleak reads them; GATT objects are added by hand; the
template's Connect neither resolves services nor updates its own property table, so Connect and
Disconnect are replaced by versions that do what bluetoothd does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from radio.advert import COMPANY_ID, PAGE_CHARACTERISTIC_UUID, PAGING_SERVICE_UUID

BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"
WAIT = 10.0
DEVICE = "org.bluez.Device1"
CHARACTERISTIC = "org.bluez.GattCharacteristic1"
MOCK = "org.freedesktop.DBus.Mock"
BLUEZ_MOCK = "org.bluez.Mock"
TEST_IFACE = "org.tablegate.Test"

_CONNECT = """\
self.connected = True
self.UpdateProperties('org.bluez.Device1', {
    'Connected': dbus.Boolean(True), 'ServicesResolved': dbus.Boolean(True)})
"""
_DISCONNECT = """\
self.connected = False
self.UpdateProperties('org.bluez.Device1', {
    'ServicesResolved': dbus.Boolean(False), 'Connected': dbus.Boolean(False)})
"""


def require_peers() -> None:
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (Debian package dbus)")
    pytest.importorskip("dbus", reason="dbus-python is not installed (needs libdbus-1-dev)")
    pytest.importorskip("dbusmock", reason="python-dbusmock is not installed")


@contextmanager
def private_system_bus() -> Iterator[str]:
    """A dbus-daemon of our own; DBUS_SYSTEM_BUS_ADDRESS points at it while the block runs."""
    from dbusmock.testcase import BusType, PrivateDBus

    saved = os.environ.get(BUS_ENV)
    bus = PrivateDBus(BusType.SYSTEM)
    bus.start()  # sets DBUS_SYSTEM_BUS_ADDRESS itself, for bleak (dbus_fast reads it on connect)
    try:
        yield bus.address
    finally:
        bus.stop()
        if saved is None:
            os.environ.pop(BUS_ENV, None)
        else:
            os.environ[BUS_ENV] = saved


class BluezMock:
    """bluetoothd as a dbusmock process; methods act on it as the radio world would."""

    def __init__(self, address: str, logfile: Path) -> None:
        import dbus

        self._dbus = dbus
        self.logfile = logfile
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dbusmock",
                "--system",
                "--template",
                "bluez5",
                "--logfile",
                str(logfile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.bus = dbus.bus.BusConnection(address)
        deadline = time.monotonic() + WAIT
        while not self.bus.name_has_owner("org.bluez"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the bluez5 mock did not come up: {self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def _mock(self, path: str, interface: str = MOCK) -> Any:
        return self._dbus.Interface(self.bus.get_object("org.bluez", path), interface)

    def add_adapter(self, name: str = "hci0") -> str:
        return str(self._mock("/", BLUEZ_MOCK).AddAdapter(name, "tablegate-test"))

    def add_device(self, address: str, alias: str, adapter: str = "hci0") -> str:
        """Add a device before bleak starts (its InterfacesAdded carries the template's arrays)."""
        dbus = self._dbus
        path = str(self._mock("/", BLUEZ_MOCK).AddDevice(adapter, address, alias))
        device = self._mock(path)
        device.UpdateProperties(
            DEVICE,
            {
                "ManufacturerData": dbus.Dictionary({}, signature="qv"),
                "ServiceData": dbus.Dictionary({}, signature="sv"),
            },
        )
        device.AddMethod(DEVICE, "Connect", "", "", _CONNECT)
        device.AddMethod(DEVICE, "Disconnect", "", "", _DISCONNECT)
        return path

    def advertise(self, path: str, manufacturer_data: bytes, rssi: int) -> None:
        """What bluetoothd does when an advertisement arrives: update the Device1 properties."""
        dbus = self._dbus
        self._mock(path).UpdateProperties(
            DEVICE,
            {
                "ManufacturerData": dbus.Dictionary(
                    {dbus.UInt16(COMPANY_ID): dbus.Array(manufacturer_data, signature="y")},
                    signature="qv",
                ),
                "RSSI": dbus.Int16(rssi),
            },
        )

    def add_paging_service(self, device_path: str) -> str:
        """The tracker's GATT paging service; returns the characteristic's path."""
        dbus = self._dbus
        service = f"{device_path}/service0010"
        char = f"{service}/char0011"
        service_props = {
            "UUID": PAGING_SERVICE_UUID,
            "Device": dbus.ObjectPath(device_path),
            "Primary": dbus.Boolean(True),
            "Includes": dbus.Array([], signature="o"),
        }
        char_props = {
            "UUID": PAGE_CHARACTERISTIC_UUID,
            "Service": dbus.ObjectPath(service),
            "Flags": dbus.Array(["write"], signature="s"),
            "Value": dbus.Array([], signature="y"),
            "MTU": dbus.UInt16(23),
        }
        root = self._mock("/")
        root.AddObject(service, "org.bluez.GattService1", service_props, [])
        root.AddObject(
            char,
            CHARACTERISTIC,
            char_props,
            [
                ("ReadValue", "a{sv}", "ay", f"ret = self.props['{CHARACTERISTIC}']['Value']"),
                ("WriteValue", "aya{sv}", "", f"self.props['{CHARACTERISTIC}']['Value'] = args[0]"),
            ],
        )
        # AddObject does not announce objects; bluetoothd does, once services are resolved.
        root.AddMethod(
            TEST_IFACE, "Announce", "o", "", "objects[args[0]].object_manager_emit_added(args[0])"
        )
        announce = self._mock("/", TEST_IFACE).Announce
        announce(service)
        announce(char)
        return char

    def calls(self, path: str, method: str) -> list[list[Any]]:
        return [list(args) for _, args in self._mock(path).GetMethodCalls(method)]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.bus.close()
