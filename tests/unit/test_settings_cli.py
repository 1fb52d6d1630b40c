"""Boot settings (TOML + environment) and the command line, as an operator meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings
from tests.support import ROOT, GatewayProcess, free_port, http


def test_defaults_serve_out_of_the_box(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TABLEGATE_"):
            monkeypatch.delenv(key)
    s = load_settings()
    assert (s.port, s.synchronous, s.demo) == (8000, "FULL", False)
    assert s.data_dir == ROOT / "var"  # a checkout keeps its state beside itself


def test_toml_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('port = 9001\ntimezone = "Europe/Paris"\ntarget_time_default = 200\n')
    assert load_settings(cfg).port == 9001
    monkeypatch.setenv("TABLEGATE_PORT", "9002")
    s = load_settings(cfg)
    assert (s.port, s.timezone, s.target_time_default) == (9002, "Europe/Paris", 200)
    assert load_settings(cfg, port=9003).port == 9003


@pytest.mark.parametrize(
    ("toml", "env", "key"),
    [
        ("port = 70000\n", {}, "port"),
        ('timezone = "Nowhere/City"\n', {}, "timezone"),
        ("", {"TABLEGATE_SYNCHRONOUS": "OFF"}, "synchronous"),
        ("colour = 1\n", {}, "colour"),
        ("port = [\n", {}, "config file"),
    ],
)
def test_invalid_settings_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, env: dict[str, str], key: str
) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(toml)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_serve_aborts_with_one_readable_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("port = 0\n")
    result = _cli("serve", "--config", str(cfg))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "port" in lines[0]


def test_token_window_cli_opens_the_running_gateways_window(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", free_port())
    gw.start()
    try:
        status, body = http("GET", f"{gw.url}/api/v2/accesstoken/generate?name=pos")
        assert (status, body["returnCode"]) == (403, -3)
        result = _cli(
            "token-window", "--port", str(gw.port), env={"TABLEGATE_DATA_DIR": str(gw.data_dir)}
        )
        assert result.returncode == 0, result.stderr
        assert "Token window open" in result.stdout
        status, body = http("GET", f"{gw.url}/api/v2/accesstoken/generate?name=pos")
        assert (status, body["returnCode"]) == (201, 2)
    finally:
        gw.kill()


def test_token_window_cli_without_gateway(tmp_path: Path) -> None:
    result = _cli(
        "token-window", "--port", str(free_port()), env={"TABLEGATE_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 1 and "admin.cookie" in result.stderr
    (tmp_path / "admin.cookie").write_text("x")
    result = _cli(
        "token-window", "--port", str(free_port()), env={"TABLEGATE_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 1 and "no gateway answering" in result.stderr


def test_sigterm_stops_cleanly_and_keeps_orders(tmp_path: Path) -> None:
    import signal

    gw = GatewayProcess(tmp_path / "data", free_port())
    gw.start()
    token = gw.token()
    status, _ = http(
        "POST", f"{gw.url}/api/v2/activeorders", {"name": "66", "orderType": "TO_GO"}, token
    )
    assert status == 201
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(timeout=15) == 0
    wal = gw.data_dir / "tablegate.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed on the way out
    gw.port = free_port()
    gw.start()
    try:
        status, body = http("GET", f"{gw.url}/api/v2/activeorders/66", token=token)
        assert (status, body["returnCode"]) == (200, 6)
    finally:
        gw.kill()


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway import __version__
    from gateway.__main__ import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tablegate {__version__}"


def test_every_flag_has_help() -> None:
    import argparse

    from gateway.__main__ import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, sub in [("tablegate", parser), *subs.choices.items()]
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    assert missing == []
