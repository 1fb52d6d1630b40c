"""The curl examples in README.md work as printed (against a demo gateway on a free port)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, GatewayProcess, free_port


def _curl_block() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    block = next(b for b in blocks if "accesstoken/generate" in b)
    return block


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", free_port())
    gw.start(TABLEGATE_DEMO="true")
    try:
        script = _curl_block().replace("127.0.0.1:8000", f"127.0.0.1:{gw.port}")
        # Each command's answer on its own line, so they can be checked one by one.
        script = re.sub(r"^(curl .*?[^\\])$", r"\1; echo", script, flags=re.M | re.S)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert len(answers) == script.count("curl -s") - 1  # the token line is captured
        for answer in answers:
            assert answer["status"] < 400, answer
        codes = [a["returnCode"] for a in answers]
        assert codes == [5, 5, 5, 6, 5, 1014, 1002, 1000, 5, 14, 5]
    finally:
        gw.kill()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_printing_examples(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "/api/dev/" in b)
    gw = GatewayProcess(tmp_path / "data", free_port())
    gw.start(TABLEGATE_DEMO="true")
    try:
        base = f"http://127.0.0.1:{gw.port}"
        token = 'python3 -c \'import json,sys; print(json.load(sys.stdin)["token"]["token"])\''
        token_line = f"TOKEN=$(curl -s '{base}/api/v2/accesstoken/generate?name=p' | {token})\n"
        script = token_line + block.replace("127.0.0.1:8000", f"127.0.0.1:{gw.port}")
        script = re.sub(r"^(curl .*?[^\\])$", r"\1; echo", script, flags=re.M | re.S)
        # The preview and the answer need the ticket printed: give the worker a moment first.
        script = script.replace("# see what the virtual printer", "sleep 1\n# see what the virtual")
        answer = f"curl -s -X POST {base}/api/dev/devices/demo-kitchen/requests/$RID"
        script = script.replace(answer, "sleep 1; " + answer)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert len(answers) == 4, answers
        assert all(a["success"] is True for a in answers), answers
        assert any("no nuts" in t["text"] for t in answers[1]["tickets"])
        assert answers[2]["request"]["output"]["data"] == {"accepted": True, "time": 15}
        assert answers[3]["device"]["station"] == "bar"
    finally:
        gw.kill()


def test_settings_table_is_generated_from_the_model() -> None:
    from gateway.settings_table import BEGIN, END, markdown

    text = (ROOT / "README.md").read_text()
    assert BEGIN in text and END in text, "README lost the settings-table markers"
    in_readme = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert in_readme == markdown().strip(), (
        "README's settings table differs from gateway/settings.py; run "
        "`.venv/bin/python -m gateway.settings_table --write` and commit README.md"
    )


def test_every_setting_has_a_meaning_and_a_row() -> None:
    from gateway.settings import Settings
    from gateway.settings_table import markdown

    table = markdown()
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description="
        assert f"| `{name}` |" in table


def test_examples_use_order_numbers_the_simulator_never_uses() -> None:
    # The demo's simulated trackers start orders named by their numbers; a hand-typed example
    # on one of those numbers would meet (or be refused by) the simulated restaurant.
    import inspect

    from radio.simulator import Simulator

    simulated = inspect.signature(Simulator).parameters["trackers"].default
    text = "".join(re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S))
    numbers = re.findall(r'"(?:name|number)": "(\d+)"|activeorders/(\d+)', text)
    used = {int(a or b) for a, b in numbers}
    assert used, "the README examples name no order numbers any more: update this test"
    assert all(n > simulated for n in used), sorted(used)


def test_readme_says_the_preview_answers_json() -> None:
    # test_readme_printing_examples parses the preview's answer as JSON; the words must agree.
    text = (ROOT / "README.md").read_text()
    before = text[: text.index("/demo-kitchen/preview ")].splitlines()
    comments = [line for line in before[-3:] if line.startswith("#")]
    assert any("JSON" in line for line in comments), comments
