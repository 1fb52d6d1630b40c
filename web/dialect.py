"""A dialect: one API the gateway speaks (a seed's vocabulary), described in one value.

Its routes, the error envelope it answers in (for the paths it owns), how that envelope is
documented, and the docs of its path parameters and tags. The application, the error
middleware and the OpenAPI document are all built from an explicit tuple of dialects
(web.server.DIALECTS): nothing registers itself at import, so building twice gives the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.core.errors import Code
from web.routing import Route

# (request, gateway code, detail, the HTTP status of the error's class) -> the answer. A
# parser-level error has a bare BaseRequest: renderers read only its method, query, headers.
Fail = Callable[[web.BaseRequest, Code, str | None, int], web.Response]
# (request, HTTP status, reason, code) -> the answer, for a status that has no gateway code of
# its own (aiohttp's 4xx; an unexpected 500, with Code.INTERNAL).
FailStatus = Callable[[web.BaseRequest, int, str, Code], web.Response]


@dataclass(frozen=True, slots=True)
class ErrorDocs:
    """How web.openapi documents an envelope: `components.responses.<name><status>`."""

    name: str
    model: type[BaseModel]
    causes: Mapping[int, tuple[str, ...]]  # status -> one Markdown line per cause
    intro: str  # what the cause lines list, after the status phrase
    also: str | None = None  # a second media type the errors come in (the request's format)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The error shape of the paths a dialect owns, and which statuses its checks answer."""

    owns: Callable[[str], bool]
    fail: Fail
    fail_status: FailStatus
    docs: ErrorDocs
    # A failed Bearer check: missing/malformed, invalid, too many failures.
    auth_statuses: frozenset[int] = frozenset({400, 401, 429})
    # A malformed path parameter is 400 (False: an id that names nothing is simply 404).
    path_param_errors: bool = True
    always: frozenset[int] = frozenset()  # statuses every operation can answer


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    routes: tuple[Route, ...]
    # None: the dialect's paths are answered in the envelope of whichever dialect owns them.
    envelope: Envelope | None = None
    path_params: Mapping[str, Any] = field(
        default_factory=dict
    )  # documentation: path parameter -> annotation
    tags: Mapping[str, str] = field(default_factory=dict)  # documentation: tag -> description


@dataclass(frozen=True, slots=True)
class Dialects:
    """The dialects one application speaks, in the order their envelopes claim paths: the
    last envelope answers every path no earlier one owns."""

    all: tuple[Dialect, ...]
    envelopes: tuple[Envelope, ...] = field(init=False)

    def __post_init__(self) -> None:
        envelopes = tuple(d.envelope for d in self.all if d.envelope is not None)
        if not envelopes:
            raise ValueError("no dialect has an error envelope")
        object.__setattr__(self, "envelopes", envelopes)

    def routes(self) -> tuple[Route, ...]:
        return tuple(r for d in self.all for r in d.routes)

    def path_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for d in self.all:
            for name, annotation in d.path_params.items():
                if params.setdefault(name, annotation) is not annotation:
                    raise ValueError(f"path parameter {name!r} is described twice")
        return params

    def tags(self) -> dict[str, str]:
        return {tag: text for d in self.all for tag, text in d.tags.items()}

    def envelope(self, path: str) -> Envelope:
        return next((e for e in self.envelopes if e.owns(path)), self.envelopes[-1])

    def fail(
        self,
        request: web.BaseRequest,
        code: Code,
        detail: str | None = None,
        status: int = 400,
        *,
        path: str | None = None,
    ) -> web.Response:
        """The error `code` in the envelope of the path (by default the request's)."""
        return self.envelope(request.path if path is None else path).fail(
            request, code, detail, status
        )

    def fail_status(
        self, request: web.BaseRequest, status: int, reason: str, code: Code = Code.NOT_FOUND
    ) -> web.Response:
        return self.envelope(request.path).fail_status(request, status, reason, code)


DIALECTS_KEY = web.AppKey("dialects", Dialects)
