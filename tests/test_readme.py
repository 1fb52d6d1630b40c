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
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                                text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert len(answers) == script.count("curl -s") - 1  # the token line is captured
        for answer in answers:
            assert answer["status"] < 400, answer
        codes = [a["returnCode"] for a in answers]
        assert codes == [5, 5, 5, 6, 5, 1014, 1002, 1000, 5, 14, 5]
    finally:
        gw.kill()
