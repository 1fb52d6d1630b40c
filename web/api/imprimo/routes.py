"""The Imprimo dialect's routes (seed 000) under /api/dev/: printers and print requests."""

from __future__ import annotations

from web.api.imprimo import handlers as imprimo
from web.api.imprimo import schemas as si
from web.routing import Auth, Route

PREFIX = "/api/dev/"


def owns(path: str) -> bool:
    return path.startswith(PREFIX) or path == PREFIX[:-1]


def _slash(path: str) -> tuple[str, ...]:
    """The other spelling: seed 000 writes `devices/` and `devices/{id}`; clients vary."""
    return (path[:-1],) if path.endswith("/") else (path + "/",)


def _routes(base: str) -> list[Route]:
    dv = f"{base}/devices/"
    one = f"{base}/devices/{{device_id}}"
    rq = f"{one}/requests/"
    req = f"{one}/requests/{{request_id}}"
    tag = "printing"
    return [
        Route(
            "GET",
            dv,
            imprimo.list_devices,
            Auth.TOKEN,
            "The printers (devices), paged",
            tag,
            query=si.PageQuery,
            responses={200: si.DeviceList},
            aliases=_slash(dv),
        ),
        Route(
            "POST",
            dv,
            imprimo.add_device,
            Auth.TOKEN,
            "Register a printer (extension)",
            tag,
            body=si.NewDevice,
            responses={201: si.DeviceResponse},
            errors=(409,),
            aliases=_slash(dv),
        ),
        Route(
            "GET",
            one,
            imprimo.get_device,
            Auth.TOKEN,
            "One printer",
            tag,
            responses={200: si.DeviceResponse},
            errors=(404,),
            aliases=_slash(one),
        ),
        Route(
            "DELETE",
            one,
            imprimo.remove_device,
            Auth.TOKEN,
            "Remove a printer (extension); its open requests are archived with an error",
            tag,
            responses={200: si.Deleted},
            errors=(404, 409),
            aliases=_slash(one),
        ),
        Route(
            "POST",
            f"{one}/address",
            imprimo.move_device,
            Auth.TOKEN,
            "Move a printer to a new address (extension; confirms a held mDNS move)",
            tag,
            body=si.DeviceAddress,
            responses={200: si.DeviceResponse},
            errors=(404, 409),
        ),
        Route(
            "POST",
            rq,
            imprimo.submit,
            Auth.TOKEN,
            "Submit a print request",
            tag,
            body=si.SubmitRequest,
            responses={200: si.RequestResponse},
            errors=(404,),
            aliases=_slash(rq),
        ),
        Route(
            "GET",
            rq,
            imprimo.list_requests,
            Auth.TOKEN,
            "The printer's requests, newest first",
            tag,
            query=si.PageQuery,
            responses={200: si.RequestList},
            errors=(404,),
            aliases=_slash(rq),
        ),
        Route(
            "GET",
            req,
            imprimo.get_request,
            Auth.TOKEN,
            "One print request",
            tag,
            responses={200: si.RequestResponse},
            errors=(404,),
            aliases=_slash(req),
        ),
        Route(
            "POST",
            f"{req}/response",
            imprimo.respond,
            Auth.TOKEN,
            "Accept or refuse an order ticket (extension)",
            tag,
            body=si.OrderAnswer,
            responses={200: si.RequestResponse},
            errors=(404, 409),
            aliases=_slash(f"{req}/response"),
        ),
        Route(
            "GET",
            f"{one}/preview",
            imprimo.preview,
            Auth.TOKEN,
            "What a demo virtual printer printed (extension)",
            tag,
            responses={200: si.Preview},
            errors=(404,),
            aliases=_slash(f"{one}/preview"),
        ),
        Route(
            "GET",
            f"{one}/preview.png",
            imprimo.preview_png,
            Auth.TOKEN,
            "The latest ticket of a demo virtual printer as PNG (extension)",
            tag,
            responses={200: None},
            errors=(404,),
            produces="image/png",
        ),
    ]


ROUTES: tuple[Route, ...] = tuple(_routes(PREFIX[:-1]))
