"""The one error table: a returnCode names one kind of failure (two branches once gave -45 and
-46 to different errors; only deliberate synonyms may share one)."""

from __future__ import annotations

from collections import defaultdict

from gateway.core.errors import Code
from web.envelope import ERRORS

# Codes that share a returnCode on purpose: clients react to them the same way.
SYNONYMS = {
    frozenset({Code.TOKEN_WINDOW_CLOSED, Code.TOKEN_WINDOW_USED}),  # ask for a new press
    frozenset({Code.API_UNAVAILABLE, Code.STORAGE_FAILED}),  # retry after Retry-After
}


def test_each_return_code_names_one_failure() -> None:
    by_return: dict[int, set[Code]] = defaultdict(set)
    for code, (_status, return_code, _message) in ERRORS.items():
        by_return[return_code].add(code)
    shared = {frozenset(codes) for codes in by_return.values() if len(codes) > 1}
    assert shared <= SYNONYMS, sorted(sorted(c.value for c in s) for s in shared - SYNONYMS)


def test_return_codes_are_negative_and_statuses_are_errors() -> None:
    for code, (status, return_code, message) in ERRORS.items():
        assert return_code < 0 and 400 <= status < 600 and message, code
