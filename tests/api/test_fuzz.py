"""F2: every parser on the request path round-trips or rejects with its declared error."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.errors import AuthFailed, Code, ValidationFailed
from gateway.core.models import ClearReason, Order, OrderState
from gateway.core.netguard import forbidden_reason
from gateway.store.orders import order_from_json, order_to_json
from web.api.trackertrack.orders import parse_start
from web.common import basic_secret, bearer_secret, parse_bool, parse_ident, positive_number

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
digits = st.text(string.digits, min_size=1, max_size=12)
field_values = (
    json_values
    | digits
    | st.sampled_from(["ON_PREMISE", "ON_PREMISES", "TO_GO", "to_go", "", "66", "0", "-1"])
)


@given(
    st.dictionaries(
        st.sampled_from(["name", "orderType", "locationName", "x"]), field_values, max_size=4
    )
)
def test_parse_start_accepts_or_rejects_precisely(body: dict[str, Any]) -> None:
    try:
        name, order_type, location = parse_start(body)
    except ValidationFailed as exc:
        assert exc.code in {
            Code.MISSING_ORDER_NAME,
            Code.BAD_ORDER_NAME,
            Code.BAD_LOCATION_NAME,
            Code.MISSING_ORDER_TYPE,
            Code.BAD_ORDER_TYPE,
        }
        return
    assert name.isdigit() and int(name) > 0 and str(int(name)) == name
    assert order_type in {"ON_PREMISE", "ON_PREMISES", "TO_GO"}
    assert location is None or (location.isdigit() and int(location) > 0)


@given(st.text(max_size=60))
def test_parse_ident(ident: str) -> None:
    try:
        ref = parse_ident(ident)
    except ValidationFailed as exc:
        assert exc.code in {Code.BAD_ORDER_ID, Code.BAD_UUID}
        return
    assert (ref.name is None) != (ref.uuid is None)


@given(json_values)
def test_parse_bool(value: Any) -> None:
    try:
        result = parse_bool(value)
    except ValidationFailed as exc:
        assert exc.code is Code.BAD_BOOLEAN
        return
    assert isinstance(result, bool)


@given(st.integers(min_value=1, max_value=10**9 - 1))
def test_positive_number_round_trips(n: int) -> None:
    assert positive_number(n) == positive_number(str(n)) == positive_number(f"00{n}") == str(n)


@given(st.text(max_size=300))
def test_auth_headers(header: str) -> None:
    for parse in (bearer_secret, basic_secret):
        try:
            secret = parse(header)
        except AuthFailed as exc:
            assert exc.code is Code.AUTH_MALFORMED
        else:
            assert secret and len(secret) <= 512


@given(st.text(max_size=200) | st.from_regex(r"https?://[a-z0-9.:\[\]@-]{0,40}/?.{0,10}"))
def test_url_guard_never_raises(url: str) -> None:
    reason = forbidden_reason(url)
    assert reason is None or isinstance(reason, str)


@given(
    st.builds(
        Order,
        uuid=st.uuids().map(str),
        name=digits,
        order_type=st.sampled_from(["ON_PREMISE", "ON_PREMISES", "TO_GO"]),
        location=st.text(string.digits, max_size=4),
        state=st.sampled_from(list(OrderState)),
        created=st.floats(0, 2e9),
        state_changed=st.floats(0, 2e9),
        paged=st.booleans(),
        tracking=st.booleans(),
        tracker=st.none() | st.text(max_size=20),
        located_at=st.none() | st.floats(0, 2e9),
        cleared_at=st.none() | st.floats(0, 2e9),
        clear_reason=st.none() | st.sampled_from(list(ClearReason)),
    )
)
def test_journal_payload_round_trips(order: Order) -> None:
    assert order_from_json(order_to_json(order)) == order


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
async def test_http_start_never_500(client: Any, auth: Any, body: bytes) -> None:
    resp = await client.post(
        "/api/v2/activeorders", data=body, headers={**auth, "Content-Type": "application/json"}
    )
    payload = await resp.json()
    assert resp.status in (200, 201, 400), payload
    assert payload["status"] == resp.status and isinstance(payload["returnCode"], int)


def _documented_boolean_strings() -> set[str]:
    # docs/api.md says exactly which strings a boolean parameter accepts; hold it to that.
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    clause = re.search(r"and the strings (.*?) \(any case", text, re.S)
    assert clause, "docs/api.md lost the sentence listing the accepted boolean strings"
    return set(re.findall(r"`([^`]+)`", clause.group(1)))


BOOLEAN_WORDS = {"true", "false", "1", "0", "yes", "no", "on", "off"}


def test_the_documented_boolean_strings_are_these() -> None:
    assert _documented_boolean_strings() == BOOLEAN_WORDS


@given(
    st.text(max_size=8)
    | st.sampled_from(sorted(BOOLEAN_WORDS)).flatmap(
        lambda word: st.sampled_from([word, word.upper(), f" {word.title()}\t"])
    )
)
def test_parse_bool_accepts_exactly_the_documented_strings(value: str) -> None:
    if value.strip().lower() in BOOLEAN_WORDS:
        assert parse_bool(value) is (value.strip().lower() in {"true", "1", "yes", "on"})
    else:
        try:
            parse_bool(value)
        except ValidationFailed as exc:
            assert exc.code is Code.BAD_BOOLEAN
        else:
            raise AssertionError(f"{value!r} is accepted but not documented")


def test_parse_bool_json_values_as_documented() -> None:
    assert [parse_bool(v) for v in (True, False, 1, 0)] == [True, False, True, False]
    for bad in (2, -1, 1.0, None, [], {}):
        try:
            parse_bool(bad)
        except ValidationFailed as exc:
            assert exc.code is Code.BAD_BOOLEAN
        else:
            raise AssertionError(f"{bad!r} is accepted but not documented")
