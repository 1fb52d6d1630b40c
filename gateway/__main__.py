"""`tablegate` command line: serve, and open the token window of the gateway on this box."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

from gateway import __version__
from gateway.settings import Settings, SettingsError, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        args.config,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        demo=True if getattr(args, "demo", False) else None,
        new_database=True if getattr(args, "new_database", False) else None,
    )


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import sqlite3

    from gateway.app import serve
    from gateway.startup import StartRefused, storage_reason

    try:
        asyncio.run(serve(settings))
    except StartRefused as exc:
        print(f"tablegate: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, sqlite3.Error) as exc:
        # Start-up touches the data directory (database, id, cookie): say which disk is full.
        reason = storage_reason(settings.data_dir, exc)
        print(
            f"tablegate: cannot start: {reason or f'{settings.data_dir}: {exc}'}", file=sys.stderr
        )
        return 1
    return 0


def _token_window(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        cookie = settings.admin_cookie_path.read_text().strip()
    except OSError as exc:
        print(
            f"tablegate: cannot read {settings.admin_cookie_path}: {exc.strerror}; "
            "is the gateway running, and are you its user?",
            file=sys.stderr,
        )
        return 1
    port = args.port or settings.port
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/admin/token-window",
        method="POST",
        headers={"Authorization": f"Bearer {cookie}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"tablegate: the gateway refused: {exc.code} {exc.read()[:200]!r}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"tablegate: no gateway answering on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 1
    print(f"Token window open for {body.get('seconds')} s: clients may now ask for a token.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tablegate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tablegate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="address to listen on (setting host; default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (setting port; default 8000)")
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.add_argument("--demo", action="store_true", help="demo mode (simulated devices)")
    serve.add_argument(
        "--new-database",
        action="store_true",
        help="start with an empty database even though this box had one",
    )
    serve.set_defaults(func=_serve)
    window = sub.add_parser("token-window", help="open the token window of the local gateway")
    window.add_argument(
        "--config", type=Path, help="TOML settings file of the gateway (for its data_dir and port)"
    )
    window.add_argument(
        "--port", type=int, help="port of the gateway on 127.0.0.1 (default: the setting port)"
    )
    window.set_defaults(func=_token_window)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"tablegate: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
