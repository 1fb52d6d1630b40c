"""The names the box answers to, shared by mDNS (which announces them) and the web layer's
Host check (which accepts them). Kept apart from gateway.discovery so using a name does not
import zeroconf."""

from __future__ import annotations

import re


def mdns_host_name(gateway_id: str) -> str:
    """The host name the box announces (SRV target, A records), without the final dot.

    It must be ours alone: the zeroconf default reuses the instance name, so two boxes called
    "Tablegate" would publish A records under one host name and mix addresses."""
    label = re.sub(r"[^a-z0-9-]+", "-", gateway_id.lower())[:53].strip("-")
    return f"tablegate-{label}.local" if label else "tablegate.local"
