"""The README's "Quick start with your own model", run as written: its shell commands, then its
two Python snippets (gRPC, then in-process), in a fresh folder holding a ``model.onnx``.

Only what cannot be taken literally changes: ``source .venv/bin/activate`` becomes this test
environment's PATH, and ``/tmp/edgefleet.sock`` a private socket path.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.agent_process import short_socket_dir, start_agent
from support.models import affine_model
from support.polling import wait_for

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _quick_start_blocks() -> tuple[str, list[str]]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start with your own model", 1)[1].split("\n## ", 1)[0]
    shell = re.findall(r"```bash\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(shell) == 1 and len(python) == 2, "the quick start's code blocks changed"
    return shell[0], python


def test_the_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    shell, python = _quick_start_blocks()
    socket = short_socket_dir() / "edgefleet.sock"
    affine_model(tmp_path / "model.onnx")  # x float32 [batch, 4] -> y = 2x + 1
    venv_bin = Path(sys.executable).parent
    script = (shell.replace("source .venv/bin/activate", f'export PATH="{venv_bin}:$PATH"')
              .replace("/tmp/edgefleet.sock", str(socket)) + "echo $! > agent.pid\n")
    assert "source .venv/bin/activate" in shell and "/tmp/edgefleet.sock" in shell
    log = tmp_path / "shell.log"
    with log.open("wb") as out:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                              stdout=out, stderr=subprocess.STDOUT, timeout=120,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    agent_pid = int((tmp_path / "agent.pid").read_text())
    try:
        assert done.returncode == 0, log.read_text()
        wait_for(socket.exists, what="the agent's socket")
        program = ("\n".join(python).replace("/tmp/edgefleet.sock", str(socket))
                   + '\nprint("grpc", y.tolist())\nprint("in-process", outputs["y"].tolist())\n')
        ran = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr + log.read_text()
        assert "grpc [[1.0, 1.0, 1.0, 1.0]]" in ran.stdout
        assert "in-process [[1.0, 1.0, 1.0, 1.0]]" in ran.stdout
        assert "root certificates" not in log.read_text()  # the config found its folder
    finally:
        os.kill(agent_pid, signal.SIGTERM)
        wait_for(lambda: not socket.exists(), what="the agent to stop")


@pytest.mark.parametrize(("config", "said"), [
    ({}, "sagemaker_edge_core_root_certs_path is not set"),
    ({"sagemaker_edge_core_root_certs_path": "./edgefleet-keys/roots"},
     "root certificates folder edgefleet-keys/roots does not exist"),
])
def test_the_agent_warns_at_start_when_no_package_can_be_trusted(
        tmp_path: Path, config: dict[str, object], said: str) -> None:
    agent = start_agent(config, tmp_path)
    try:
        assert said in agent.log()
        assert "edgefleet keys init DIR` writes DIR/root-certs" in agent.log()
    finally:
        agent.stop()


def test_unsigned_models_allowed_means_no_warning(tmp_path: Path) -> None:
    agent = start_agent({"edgefleet_allow_unsigned_models": True}, tmp_path)
    try:
        assert "root certificates" not in agent.log()
        assert "root_certs_path" not in agent.log()
    finally:
        agent.stop()
