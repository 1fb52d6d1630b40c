"""Schemathesis against a live gateway: generated requests (valid and invalid) for every
operation in the committed OpenAPI document, checked for server errors and for answers the
document does not describe (status, content type, body schema).

The schema is loaded eagerly from `web/openapi.json` and used through `schema.parametrize()`
(schemathesis' lazy pytest fixture crashes on pytest 9). The gateway is a child process
(`tablegate serve`), shared by all operations.

Kept deterministic and bounded: hypothesis is derandomized and keeps no example database; the
button window is opened for an hour, with a token quota no run uses up, so
`GET .../accesstoken/generate?timeout=` never long-polls;
the test's own token cannot be revoked by a generated `DELETE .../accesstoken/{token_id}`; the
admin route gets the admin cookie. The WebSocket route is included: without an upgrade the
gateway answers 400, which the document lists (the feed itself is tested elsewhere).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, settings

from tests.support import GatewayProcess, free_port, http
from web.server import OPENAPI_FILE

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")
from schemathesis.checks import (  # noqa: E402 - only once schemathesis is known to be there
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 50  # per operation, fuzzing phase; the examples and coverage phases add their own
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

ORDER_NUMBER = re.compile(r"[1-9][0-9]{0,8}")

schema = schemathesis.openapi.from_dict(json.loads(OPENAPI_FILE.read_text()))


@dataclass
class Live:
    gw: GatewayProcess
    token: str
    token_id: int
    admin_cookie: str
    session: Any = field(default_factory=lambda: requests.Session())

    @property
    def url(self) -> str:
        return self.gw.url

    def headers(self, case: Any) -> dict[str, str]:
        if case.operation.path == "/api/admin/token-window":
            return {"Authorization": f"Bearer {self.admin_cookie}"}
        return {"Authorization": f"Bearer {self.token}"}

    def prepare(self, case: Any) -> bool:
        """Make the generated request meaningful; False to skip it."""
        params = case.path_parameters or {}
        if "token_id" in params and str(params["token_id"]).lstrip("0") == str(self.token_id):
            return False  # revoking the test's own token would turn the rest into 401s
        ident = params.get("ident")
        if isinstance(ident, str) and ORDER_NUMBER.fullmatch(ident) and int(ident) % 2 == 0:
            # Even numbers name an active order (with a stand-in tracker, so paging works);
            # odd numbers and random uuids exercise "not found".
            version = case.operation.path.split("/")[2]
            status, body = http(
                "POST",
                f"{self.url}/api/{version}/activeorders?dummy_tracker_address=true",
                {"name": ident, "orderType": "TO_GO"},
                self.token,
            )
            assert status in (200, 201), body
        return True


def _logged_errors(log: Path) -> list[str]:
    """ERROR records in the gateway's log (a request the parser refuses logs none: it is
    answered in the envelope by web/protocol.py and counted)."""
    records: list[list[str]] = []
    for line in log.read_text(errors="replace").splitlines():
        if re.match(r"^\d{4}-\d{2}-\d{2} ", line):
            records.append([line])
        elif records:
            records[-1].append(line)
    return ["\n".join(r[:40]) for r in records if " ERROR " in r[0]]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data = tmp_path_factory.mktemp("schemathesis") / "data"
    gw = GatewayProcess(data, free_port())
    gw.start(TABLEGATE_TOKEN_WINDOW_SECONDS="3600", TABLEGATE_TOKEN_WINDOW_MAX_TOKENS="1000")
    try:
        token = gw.token("schemathesis")
        status, body = http("GET", f"{gw.url}/api/v2/accesstoken", token=token)
        assert status == 200, body
        (token_id,) = [t["id"] for t in body["items"] if t["name"] == "schemathesis"]
        cookie = (data / "admin.cookie").read_text().strip()
        yield Live(gw, token, token_id, cookie)
        assert gw.log_path is not None
        errors = _logged_errors(gw.log_path)
        assert not errors, "the gateway logged errors:\n" + "\n".join(errors[:5])
    finally:
        gw.kill()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_the_document(case: Any, live: Live) -> None:
    if not live.prepare(case):
        return
    headers = live.headers(case)
    response = case.call(base_url=live.url, session=live.session, headers=headers)
    case.validate_response(
        response,
        checks=CHECKS,
        headers=headers,
        transport_kwargs={"base_url": live.url, "session": live.session, "headers": headers},
    )


# -- findings from the first schemathesis runs, kept as regression tests ----------------------
# They get their own gateway: the 500s they provoke are logged, which `live` would reject.


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    gw = GatewayProcess(tmp_path_factory.mktemp("findings") / "data", free_port())
    gw.start()
    try:
        yield gw.url, gw.token("findings")
    finally:
        gw.kill()


def raw_get(url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """A GET whose answer may not be JSON: (status, content type, body)."""
    parts = urlsplit(url)
    conn = HTTPConnection(parts.netloc, timeout=5)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}", headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/orders?limit=%C2%B2"),  # trackertrack._int_param
        ("GET", "/api/v2/orders?offset=%C2%B2"),
        ("GET", "/api/v1/statistics?target_time=%C2%B2"),
        ("GET", "/api/v2/accesstoken/generate?name=x&timeout=%C2%B2"),  # tokens._timeout
        ("DELETE", "/api/v2/accesstoken/%C2%B2"),  # tokens.revoke_token
        ("GET", "/api/v2/orders?limit=" + "9" * 5000),  # int() refuses over 4300 digits
        ("GET", "/api/v2/accesstoken/generate?name=x&timeout=" + "9" * 5000),
    ],
)
def test_non_ascii_digits_are_refused_with_400(
    findings: tuple[str, str], method: str, path: str
) -> None:
    url, token = findings
    status, body = http(method, url + path, token=token)
    assert status == 400, body


def test_oversized_request_line_gets_the_envelope(findings: tuple[str, str]) -> None:
    """Refused by aiohttp's parser before any route: the gateway's protocol handler
    (web/protocol.py) answers it in the path's envelope, without echoing the line."""
    url, token = findings
    status, content_type, body = raw_get(
        f"{url}/api/v2/orders?location_name={'9' * 9000}", {"Authorization": f"Bearer {token}"}
    )
    assert status in (400, 414)
    assert content_type.startswith("application/json"), body[:200]
    assert json.loads(body) == {
        "status": 400,
        "returnCode": -48,
        "message": "Malformed HTTP request.",
    }


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "017700000001", "0"])
def test_loopback_in_other_spellings_is_refused(findings: tuple[str, str], host: str) -> None:
    url, token = findings
    status, body = http(
        "POST", f"{url}/api/v2/register", {"http_client": f"http://{host}/x"}, token=token
    )
    assert (status, body["returnCode"]) == (400, -29), body
