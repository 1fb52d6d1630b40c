"""Devices and print requests as seed 000 (Imprimo) spells them (Unix seconds, `attemps`).

Shared by the API responses and the automatic reports, which the printing service writes in
the transaction of the change they report, so both always say the same thing.
"""

from __future__ import annotations

from typing import Any

from gateway.core.printing import Device, PrintRequest


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def device_json(d: Device) -> dict[str, Any]:
    body = {
        "id": d.id,
        "dateCreated": int(d.date_created),
        "status": d.status.value if d.status else None,
        "statusDate": _ts(d.status_date),
        "isOnline": d.is_online,
        "dateLastSeen": _ts(d.date_last_seen),
        "password": d.password,
        "phoneNumber": d.phone_number,
        # Extensions (not in seed 000, Imprimo): what a manager needs to tell printers apart.
        "name": d.name,
        "station": d.station,
        "statusDetail": d.status_detail or None,
    }
    if d.pending_address is not None:
        body["pendingAddress"] = d.pending_address
    return body


def request_json(r: PrintRequest, *, with_device: bool = False) -> dict[str, Any]:
    err = r.error
    rep = r.report
    body: dict[str, Any] = {
        "id": r.id,
        "dateCreated": int(r.date_created),
        "deadline": int(r.deadline),
        "reserved": r.reserved,
        "process": {"status": r.process_status.value, "statusDate": int(r.process_status_date)},
        "input": {"command": r.command.value, "data": r.data, "dateSent": _ts(r.date_sent)},
        "output": {"data": r.output_data, "dateReceived": _ts(r.date_received)},
        "error": None
        if err is None
        else {
            "processStatus": err.process_status.value,
            "code": err.code.value,
            "message": err.message,
            "dateCreated": int(err.date_created),
        },
        "report": {
            "enabled": rep.enabled,
            "attemps": rep.attempts,
            "status": rep.status.value,
            "statusDate": _ts(rep.status_date),
            "error": None
            if rep.error is None
            else {
                "code": rep.error.code.value,
                "message": rep.error.message,
                "dateCreated": int(rep.error.date_created),
            },
        },
    }
    if with_device:
        body["deviceId"] = r.device_id
    return body


def report_json(devices: list[Device], requests: list[PrintRequest]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if devices:
        body["devices"] = [device_json(d) for d in devices]
    if requests:
        body["requests"] = [request_json(r, with_device=True) for r in requests]
    return body
