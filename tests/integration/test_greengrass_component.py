"""The Greengrass component end to end: the recipe's Run step as Greengrass would run it, and
Cloud capture with the credentials of the token exchange service (TES).

Greengrass is not installed here; the tests do what its nucleus does for a generic component:
merge the deployment's configuration over the recipe's defaults, interpolate the lifecycle's
recipe variables (``{configuration:/Key}`` as the value's text, ``{work:path}``,
``{artifacts:path}``), and run the step's script with ``sh -c`` in the work folder, with the
step's ``Setenv`` and the variables the nucleus sets for every component (``AWS_IOT_THING_NAME``,
``AWS_REGION``, and, with the TES as a dependency, ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and
``AWS_CONTAINER_AUTHORIZATION_TOKEN``). The TES is a stand-in HTTP endpoint on 127.0.0.1 that
hands out the SeaweedFS fixture's keys, the way the real one hands out the device role's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML: a dependency of the dev extra's moto
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.agent_process import AgentProcess, short_socket_dir
from support.credentials import TOKEN, CredentialsEndpoint
from support.greengrass import as_text
from support.models import affine_reference
from support.packages import Packages
from support.polling import wait_for
from support.s3server import S3Server

from edgefleet.proto import agent_pb2 as pb

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "integrations" / "greengrass"
RECIPE: dict[str, Any] = yaml.safe_load((COMPONENT / "recipe.yaml").read_text())
THING = "turbine-r80711"


# -- what the Greengrass nucleus does ------------------------------------------------------------
def interpolate(text: str, configuration: Mapping[str, Any], *, work: Path,
                artifacts: Path) -> str:
    """Replace the recipe variables in ``text`` as the nucleus does (an unknown configuration
    key stays as it is)."""

    def replace(match: re.Match[str]) -> str:
        namespace, key = match.group(1), match.group(2)
        if namespace == "configuration":
            node: Any = configuration
            for part in key.removeprefix("/").split("/"):
                if not isinstance(node, dict) or part not in node:
                    return match.group(0)
                node = node[part]
            return as_text(node)
        return {("work", "path"): str(work), ("artifacts", "path"): str(artifacts),
                ("artifacts", "decompressedPath"): str(artifacts)}[(namespace, key)]

    return re.sub(r"\{([.\w]+):([^:}]+)\}", replace, text)


def component_environment(endpoint: CredentialsEndpoint | None) -> dict[str, str]:
    """The variables the nucleus gives a component process (no static AWS keys, no ~/.aws)."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "EDGEFLEET_GG_"))}
    environ.update(AWS_IOT_THING_NAME=THING, AWS_REGION="us-east-1",
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/nonexistent",
                   AWS_SHARED_CREDENTIALS_FILE="/nonexistent", PYTHONUNBUFFERED="1")
    if endpoint is not None:
        environ.update(AWS_CONTAINER_CREDENTIALS_FULL_URI=endpoint.url,
                       AWS_CONTAINER_AUTHORIZATION_TOKEN=TOKEN)
    return environ


def configuration(merge: Mapping[str, Any]) -> dict[str, Any]:
    """The component's configuration after a deployment that merges ``merge``."""
    return {**RECIPE["ComponentConfiguration"]["DefaultConfiguration"], **merge}


def install(work: Path) -> None:
    """What the recipe's Install step leaves behind: a venv with edgefleet at
    ``{work:path}/venv`` (here: this test run's own environment)."""
    work.mkdir(parents=True)
    (work / "venv").symlink_to(Path(sys.prefix), target_is_directory=True)


def run_step(config: Mapping[str, Any], work: Path, environ: Mapping[str, str],
             socket_path: Path) -> AgentProcess:
    """Start the recipe's Run step as the nucleus would, and wait until the agent serves."""
    step = RECIPE["Lifecycle"]["Run"]
    variables = {"work": work, "artifacts": COMPONENT / "artifacts"}
    setenv = {name: interpolate(value, config, **variables)
              for name, value in step["Setenv"].items()}
    script = interpolate(step["Script"], config, **variables)
    return _start(["sh", "-c", script], work, {**environ, **setenv}, socket_path)


#: Starts the agent from the configuration file with the library function, as the CLI's
#: --from-greengrass-config does (so the mapping is tested apart from the command line).
LAUNCHER = """
import logging, signal, sys, threading
from pathlib import Path
from edgefleet.agent.daemon import Agent
from edgefleet.agent.greengrass import load_greengrass_config
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
config, socket_path = load_greengrass_config(Path(sys.argv[1]))
agent = Agent(config, socket_path, force=True)
agent.start()
stop = threading.Event()
for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda *_: stop.set())
stop.wait()
agent.stop()
"""


def function_launch(config: Mapping[str, Any], work: Path, environ: Mapping[str, str],
                    socket_path: Path) -> AgentProcess:
    """Write the configuration file with the recipe's writer artifact, then start the agent
    with :func:`~edgefleet.agent.greengrass.load_greengrass_config`."""
    config_file = work / "greengrass-config.json"
    setenv = {f"EDGEFLEET_GG_{name}": as_text(value) for name, value in config.items()}
    subprocess.run([sys.executable, str(COMPONENT / "artifacts" / "greengrass_config.py"),
                    str(config_file)], env={**environ, **setenv}, check=True, timeout=60)
    return _start([sys.executable, "-c", LAUNCHER, str(config_file)], work, environ,
                  socket_path)


def _start(args: list[str], work: Path, environ: Mapping[str, str],
           socket_path: Path) -> AgentProcess:
    log_path = work / f"component-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        # Its own process group: stop() can end whatever the step left behind.
        process = subprocess.Popen(args, cwd=work, env=dict(environ), stdout=log, stderr=log,
                                   start_new_session=True)
    agent = AgentProcess(socket_path, process, log_path)
    health = health_pb2_grpc.HealthStub(agent.channel)

    def serving() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the component exited with {process.returncode}:\n"
                                 f"{agent.log()}")
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    try:
        wait_for(serving, 30, "the component's agent to serve")
    except AssertionError:
        stop(agent, signal.SIGKILL)
        raise
    return agent


def stop(agent: AgentProcess, sig: int = signal.SIGTERM) -> int:
    """Stop the component as Greengrass does (``sig`` to the step's process), then kill what
    is left of its process group (e.g. an agent a step started without ``exec``).

    Returns:
        The step's exit status.
    """
    status = agent.stop(sig)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(agent.process.pid, signal.SIGKILL)
    return status


# -- the stand-in token exchange service: support/credentials.py ---------------------------
@pytest.fixture
def tes() -> Iterator[CredentialsEndpoint]:
    endpoint = CredentialsEndpoint()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


# -- calls over the socket -----------------------------------------------------------------------
def tensor(name: str, array: np.ndarray) -> pb.Tensor:
    return pb.Tensor(tensor_metadata=pb.TensorMetadata(name=name.encode(), data_type=pb.FLOAT32,
                                                       shape=list(array.shape)),
                     byte_data=array.astype(np.float32).tobytes())


def predict_and_capture(agent: AgentProcess, packages: Packages, capture_id: str) -> None:
    """Load the signed affine package, predict, list, capture; wait for the capture's SUCCESS."""
    agent.stub.LoadModel(pb.LoadModelRequest(url=str(packages.affine), name="affine"))
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    reply = agent.stub.Predict(pb.PredictRequest(name="affine", tensors=[tensor("x", x)]))
    outputs = {t.tensor_metadata.name.decode(): np.frombuffer(t.byte_data, np.float32).reshape(
        t.tensor_metadata.shape) for t in reply.tensors}
    y, s = affine_reference(x)
    np.testing.assert_array_equal(outputs["y"], y)
    np.testing.assert_array_equal(outputs["s"], s)
    listed = agent.stub.ListModels(pb.ListModelsRequest()).models
    assert [m.name for m in listed] == ["affine"]
    now = time.time_ns()
    agent.stub.CaptureData(pb.CaptureDataRequest(
        model_name="affine", capture_id=capture_id,
        inference_timestamp=pb.Timestamp(seconds=now // 10**9, nanos=now % 10**9),
        input_tensors=[tensor("x", x)], output_tensors=[tensor("y", y), tensor("s", s)]))

    def stored() -> bool:
        status = agent.stub.GetCaptureDataStatus(
            pb.GetCaptureDataStatusRequest(capture_id=capture_id)).status
        assert status != pb.FAILURE, agent.log()
        return bool(status == pb.SUCCESS)

    wait_for(stored, 30, f"capture {capture_id} to be stored")


# -- the tests -----------------------------------------------------------------------------------
def test_the_recipe_run_step_starts_a_working_agent(packages: Packages, tmp_path: Path) -> None:
    work = tmp_path / "work"
    install(work)
    socket_path = short_socket_dir() / "aws.greengrass.SageMakerEdgeManager.sock"
    config = configuration({
        "DeviceFleetName": "windfarm", "CaptureDataDestination": "Disk",
        "CaptureDataPushPeriodSeconds": 0.2, "SagemakerEdgeLogVerbose": "true",
        "UnixSocketName": str(socket_path),
        "EdgefleetConfig": {"sagemaker_edge_core_root_certs_path": str(packages.root_certs)}})
    agent = run_step(config, work, component_environment(None), socket_path)
    try:
        predict_and_capture(agent, packages, "run-step-1")
        config_file = work / "greengrass-config.json"
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
        assert json.loads(config_file.read_text())["DeviceFleetName"] == "windfarm"
        # CaptureDataDiskPath "" and FolderPrefix sme-capture: under the work folder.
        batches = list((work / "capture" / "sme-capture" / "windfarm" / "affine").rglob("*.jsonl"))
        assert len(batches) == 1
        record = json.loads(batches[0].read_text().splitlines()[0])
        assert record["eventMetadata"]["deviceId"] == THING
        assert (work / "data").is_dir()
    finally:
        # The Run step execs the agent: Greengrass's stop signal reaches it directly.
        assert stop(agent) == 0, agent.log()
    assert not socket_path.exists()
    shutil.rmtree(socket_path.parent)


LAUNCHES = [pytest.param(function_launch, id="load_greengrass_config"),
            pytest.param(run_step, id="recipe-run-step")]


@pytest.mark.parametrize("launch", LAUNCHES)
def test_cloud_capture_uploads_with_the_token_exchange_services_credentials(
        launch: Any, packages: Packages, s3: S3Server, tes: CredentialsEndpoint,
        tmp_path: Path) -> None:
    bucket = f"sagemaker-gg-{launch.__name__.replace('_', '-')}"
    s3.client().create_bucket(Bucket=bucket)
    work = tmp_path / "work"
    install(work)
    socket_path = short_socket_dir() / "agent.sock"
    config = configuration({
        "DeviceFleetName": "windfarm", "BucketName": bucket,  # CaptureDataDestination: Cloud
        "CaptureDataPushPeriodSeconds": 0.2, "UnixSocketName": str(socket_path),
        "EdgefleetConfig": {"sagemaker_edge_core_root_certs_path": str(packages.root_certs),
                            "edgefleet_s3_endpoint_url": s3.endpoint_url}})
    agent = launch(config, work, component_environment(tes), socket_path)
    try:
        predict_and_capture(agent, packages, "tes-1")
    finally:
        assert stop(agent) == 0, agent.log()
    shutil.rmtree(socket_path.parent)
    assert tes.calls and set(tes.calls) == {TOKEN}  # boto3 fetched the credentials from it
    records = s3.records(bucket)
    assert [r.request.capture_id for r in records] == ["tes-1"]
    keys = sorted(s3.objects(bucket))
    assert keys and all(k.startswith("sme-capture/windfarm/affine/") for k in keys), keys


def test_the_capture_sink_signs_with_the_session_token_the_endpoint_hands_out(
        s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the real TES hands out always has a session token: it goes on every request."""
    from edgefleet.agent.capture.sinks import S3Sink
    from edgefleet.agent.greengrass import agent_config_from_greengrass

    endpoint = CredentialsEndpoint(session_token="FwoGZXIvYXdzEXAMPLE")
    try:
        for name in os.environ:
            if name.startswith("AWS_"):
                monkeypatch.delenv(name)
        for name, value in component_environment(endpoint).items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        config, _ = agent_config_from_greengrass(
            {"DeviceFleetName": "windfarm", "BucketName": "sagemaker-token",
             "EdgefleetConfig": {"edgefleet_s3_endpoint_url": s3.endpoint_url}},
            work_dir=tmp_path)
        sink = S3Sink.from_config(config)
        sent: list[str | None] = []
        sink.client.meta.events.register(
            "before-send.s3.*", lambda request, **_: sent.append(
                request.headers.get("X-Amz-Security-Token")))
        with pytest.raises(Exception, match="InvalidAccessKeyId"):  # SeaweedFS: see above
            sink.client.put_object(Bucket="sagemaker-token", Key="k", Body=b"x")
        sink.close()
    finally:
        endpoint.stop()
    assert endpoint.calls == [TOKEN]
    tokens = {t.decode() if isinstance(t, bytes) else t for t in sent}
    assert sent and tokens == {"FwoGZXIvYXdzEXAMPLE"}
