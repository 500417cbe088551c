"""``edgefleet bridge`` as a real process in front of a real agent: every method over HTTP and
over ``--stdio``, batches, notifications, every error code, path escapes; and against the real
SeaweedFS store: packages downloaded once and cached, ``s3:///`` inputs and outputs."""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from support.agent_process import AgentProcess
from support.models import affine_reference
from support.packages import Packages
from support.polling import wait_for
from support.s3server import ACCESS_KEY, SECRET_KEY, S3Server

# Every bridge test starts real processes (the bridge, and an agent per module).
pytestmark = pytest.mark.slow

BRIDGE_ENV_PREFIXES = ("SAPT_", "EDGEFLEET_BRIDGE_", "AWS_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bridge_command() -> list[str]:
    exe = shutil.which("edgefleet", path=str(Path(sys.executable).parent))
    assert exe, "the edgefleet console script is missing: pip install -e '.[dev]'"
    return [exe, "bridge"]


def bridge_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without bridge or AWS settings (they would leak in), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(BRIDGE_ENV_PREFIXES)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Folders:
    base: Path
    data: Path
    models: Path
    cache: Path
    outside: Path

    def config(self, agent_socket: Path, **extra: Any) -> Path:
        path = self.base / f"bridge-{len(list(self.base.glob('bridge-*.json')))}.json"
        path.write_text(json.dumps({
            "socket": str(agent_socket), "data_folder": str(self.data),
            "models_folder": str(self.models), "cache_folder": str(self.cache), **extra}))
        return path


@pytest.fixture(scope="module")
def folders(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Folders:
    base = tmp_path_factory.mktemp("bridge")
    found = Folders(base, base / "data", base / "models", base / "cache", base / "outside")
    for folder in (found.data, found.models, found.outside):
        folder.mkdir()
    for package in (packages.affine, packages.mixed, packages.image):
        shutil.copy(package, found.models)
    (found.models / "junk.tar.gz").write_bytes(b"not a package")
    np.save(found.outside / "secret.npy", np.ones((1, 4), np.float32))
    shutil.copy(packages.affine, found.outside / "outside.tar.gz")
    return found


def png(color: tuple[int, int, int], size: tuple[int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


# -- HTTP -----------------------------------------------------------------------------------------

@dataclass
class HttpBridge:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def post(self, body: Any) -> httpx.Response:
        content = body if isinstance(body, str | bytes) else json.dumps(body)
        return httpx.post(self.url, content=content, timeout=60,
                          headers={"content-type": "application/json"})

    def call(self, method: str, params: Any = None, request_id: Any = 1) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        reply = self.post(message)
        assert reply.status_code == 200, reply.text
        answer: dict[str, Any] = reply.json()
        assert answer["id"] == request_id
        return answer

    def result(self, method: str, params: Any = None) -> Any:
        answer = self.call(method, params)
        assert "result" in answer, answer
        return answer["result"]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        return self.process.returncode


def start_http_bridge(config: Path, log: Path, env: dict[str, str] | None = None) -> HttpBridge:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen([*bridge_command(), "--config", str(config), "--port",
                                    str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=bridge_env(env or {}))
    bridge = HttpBridge(f"http://127.0.0.1:{port}/", process, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"bridge exited with {process.returncode}: {log.read_text()}")
        try:
            return httpx.get(f"{bridge.url}healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 30, "the bridge to serve")
    except AssertionError:
        bridge.stop()
        raise
    return bridge


@pytest.fixture(scope="module")
def http(agent: AgentProcess, folders: Folders) -> Iterator[HttpBridge]:
    bridge = start_http_bridge(folders.config(agent.socket_path), folders.base / "http.log")
    yield bridge
    assert bridge.stop() == 0, bridge.log.read_text()
    assert "stopped" in bridge.log.read_text()


def error_of(answer: dict[str, Any], code: int) -> dict[str, Any]:
    assert "error" in answer, answer
    assert answer["error"]["code"] == code, answer
    error: dict[str, Any] = answer["error"]
    return error


def test_list_load_describe_unload(http: HttpBridge) -> None:
    assert all(m["name"] != "h-affine" for m in http.result("listModels"))
    model = http.result("loadModel", {"name": "h-affine", "url": "affine-1.0.tar.gz"})
    assert model["name"] == model["handle"] == "h-affine"
    assert model["input_tensor_metadatas"] == [
        {"name": "x", "dtype": "FLOAT32", "type": 5, "shape": [-1, 4]}]
    assert [t["name"] for t in model["output_tensor_metadatas"]] == ["y", "s"]
    assert model["package"] == {"source": "local", "url": "affine-1.0.tar.gz"}
    listed = {m["name"]: m for m in http.result("listModels")}
    assert listed["h-affine"] == {k: v for k, v in model.items() if k != "package"}
    assert http.result("describeModel", {"name": "h-affine"})["url"] == model["url"]
    assert http.result("unloadModel", {"name": "h-affine"}) == {"name": "h-affine",
                                                                "unloaded": True}
    assert "h-affine" not in {m["name"] for m in http.result("listModels")}
    # file:/// urls name the same local packages
    http.result("loadModel", {"name": "h-affine", "url": "file:///affine-1.0.tar.gz"})
    http.result("unloadModel", {"name": "h-affine"})


def test_predict_npy_in_and_out(http: HttpBridge, folders: Folders) -> None:
    http.result("loadModel", {"name": "h-npy", "url": "affine-1.0.tar.gz"})
    x = np.arange(12, dtype=np.float64).reshape(3, 4)  # float64: cast to the model's float32
    np.save(folders.data / "h-x.npy", x)
    result = http.result("predict", {"model_name": "h-npy", "input_data_url": "file:///h-x.npy",
                                     "output_url": "file:///results/h-out.npy"})
    assert result == {"model_name": "h-npy", "outputs": [
        {"name": "y", "dtype": "FLOAT32", "type": 5, "shape": [3, 4],
         "url": "file:///results/h-out-y.npy"},
        {"name": "s", "dtype": "FLOAT32", "type": 5, "shape": [3],
         "url": "file:///results/h-out-s.npy"}]}
    y, s = affine_reference(x.astype(np.float32))
    np.testing.assert_array_equal(np.load(folders.data / "results" / "h-out-y.npy"), y)
    np.testing.assert_array_equal(np.load(folders.data / "results" / "h-out-s.npy"), s)
    # .npz: every output in one file
    http.result("predict", {"model_name": "h-npy", "input_data_url": "file:///h-x.npy",
                            "output_url": "file:///h-all.npz"})
    with np.load(folders.data / "h-all.npz") as outputs:
        np.testing.assert_array_equal(outputs["s"], s)
    assert not list(folders.data.rglob("*.partial"))


def test_predict_raw_bytes(http: HttpBridge, folders: Folders) -> None:
    http.result("loadModel", {"name": "h-raw", "url": "mixed-1.0.tar.gz"})
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    (folders.data / "h-a.raw").write_bytes(a.tobytes())
    # mixed takes two inputs: raw bytes cannot carry both
    error = error_of(http.call("predict", {"model_name": "h-raw",
                                           "input_data_url": "file:///h-a.raw"}), -32602)
    assert error["data"]["param"] == "input_data_url" and "2 inputs" in error["message"]
    np.savez(folders.data / "h-ab.npz", a=a, b=np.ones((2, 3), np.int32))
    result = http.result("predict", {"model_name": "h-raw", "input_data_url": "file:///h-ab.npz",
                                     "output_url": "file:///h-out.data"})
    assert result["outputs"] == [{"name": "out", "dtype": "FLOAT64", "type": 6, "shape": [2, 3],
                                  "url": "file:///h-out.data"}]
    assert (folders.data / "h-out.data").read_bytes() == (a + 1).astype(np.float64).tobytes()
    # raw bytes in, for a single-input model; one dynamic dimension is inferred
    http.result("loadModel", {"name": "h-raw1", "url": "affine-1.0.tar.gz"})
    x = np.arange(8, dtype=np.float32)
    (folders.data / "h-x.bin").write_bytes(x.tobytes())
    result = http.result("predict", {"model_name": "h-raw1", "input_data_url": "file:///h-x.bin",
                                     "output_url": "file:///h-y.bin"})
    assert [o["shape"] for o in result["outputs"]] == [[2, 4], [2]]
    y, _ = affine_reference(x.reshape(2, 4))
    assert (folders.data / "h-y-y.bin").read_bytes() == y.tobytes()
    error = error_of(http.call("predict", {"model_name": "h-raw1",
                                           "input_data_url": "file:///h-a.raw"}), -32602)
    assert "24 bytes" in error["message"]


@pytest.mark.parametrize(("name", "size", "fmt"), [
    ("h-same.png", (224, 224), "PNG"), ("h-small.png", (100, 60), "PNG"),
    ("h-wide.bmp", (640, 200), "BMP")])
def test_predict_image(http: HttpBridge, folders: Folders, name: str, size: tuple[int, int],
                       fmt: str) -> None:
    if "h-image" not in {m["name"] for m in http.result("listModels")}:
        http.result("loadModel", {"name": "h-image", "url": "image-1.0.tar.gz"})
    (folders.data / name).write_bytes(png((10, 20, 30), size, fmt))
    result = http.result("predict", {"model_name": "h-image", "input_data_url": f"file:///{name}",
                                     "output_url": f"file:///{name}.npz"})
    assert [(o["name"], o["shape"]) for o in result["outputs"]] == [
        ("m", [1, 3]), ("y", [1, 3, 224, 224])]
    with np.load(folders.data / f"{name}.npz") as outputs:
        # The per-channel means are the colour only when the image is laid out NCHW.
        np.testing.assert_allclose(outputs["m"], [[10, 20, 30]], rtol=1e-6)
        np.testing.assert_allclose(outputs["y"][0, :, 5, 7], [5.25, 10.25, 15.25])
    scaled = http.result("predict", {"model_name": "h-image", "input_data_url": f"file:///{name}",
                                     "output_url": "file:///h-scaled.npz", "scale": 0.1})
    assert scaled["outputs"][0]["url"] == "file:///h-scaled.npz"
    with np.load(folders.data / "h-scaled.npz") as outputs:
        np.testing.assert_allclose(outputs["m"], [[1, 2, 3]], rtol=1e-5)


def test_batch_with_notifications(http: HttpBridge) -> None:
    reply = http.post([
        {"jsonrpc": "2.0", "method": "loadModel",
         "params": {"name": "h-batch", "url": "affine-1.0.tar.gz"}},
        {"jsonrpc": "2.0", "id": "list", "method": "listModels"},
        {"jsonrpc": "2.0", "id": "bad", "method": "nope"},
        {"jsonrpc": "2.0", "id": "un", "method": "unloadModel", "params": {"name": "h-batch"}},
        42,
    ])
    assert reply.status_code == 200
    answers = reply.json()
    assert [a["id"] for a in answers] == ["list", "bad", "un", None]
    assert "h-batch" in {m["name"] for m in answers[0]["result"]}  # the notification ran first
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["result"]["unloaded"] is True
    assert answers[3]["error"]["code"] == -32600


def test_notifications_get_no_body(http: HttpBridge) -> None:
    single = http.post({"jsonrpc": "2.0", "method": "loadModel",
                        "params": {"name": "h-note", "url": "affine-1.0.tar.gz"}})
    assert (single.status_code, single.content) == (204, b"")
    assert "h-note" in {m["name"] for m in http.result("listModels")}
    batch = http.post([{"jsonrpc": "2.0", "method": "unloadModel", "params": {"name": "h-note"}},
                       {"jsonrpc": "2.0", "method": "no-such-method"}])
    assert (batch.status_code, batch.content) == (204, b"")
    assert "h-note" not in {m["name"] for m in http.result("listModels")}


def test_protocol_errors_over_http(http: HttpBridge) -> None:
    for body, code in [("{garbage", -32700), (b"\xff\xfe", -32700), ("[]", -32600),
                       ('{"jsonrpc": "2.0", "method": 1, "id": 1}', -32600),
                       ('{"jsonrpc": "2.0", "method": "listModels", "params": 3, "id": 1}',
                        -32600),
                       ('{"jsonrpc": "2.0", "method": "listModels", "id": ' + "9" * 400 + "}",
                        None)]:
        reply = http.post(body)
        assert reply.status_code == 200
        answer = reply.json()
        if code is None:  # a huge id is fine and echoed
            assert answer["id"] == int("9" * 400) and "result" in answer
        else:
            assert answer["error"]["code"] == code, answer
    error = error_of(http.call("loadModels"), -32601)
    assert "listModels" in error["data"]["methods"]
    too_big = http.post('{"jsonrpc": "2.0", "method": "listModels", "id": "' + "x" * (2 << 20)
                        + '"}')
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == -32600
    assert httpx.get(http.url, timeout=5).status_code == 405


@pytest.mark.parametrize(("method", "params", "param"), [
    ("loadModel", {"url": "affine-1.0.tar.gz"}, "name"),
    ("loadModel", {"name": "has_underscore", "url": "affine-1.0.tar.gz"}, "name"),
    ("loadModel", {"name": 5, "url": "affine-1.0.tar.gz"}, "name"),
    ("loadModel", {"name": "h-p"}, "s3_filename"),
    ("loadModel", {"name": "h-p", "url": "a.tar.gz", "s3_filename": "a.tar.gz"}, "s3_filename"),
    ("loadModel", {"name": "h-p", "s3_filename": "model.zip"}, "s3_filename"),
    ("loadModel", ["h-p", "affine-1.0.tar.gz"], "params"),
    ("unloadModel", {}, "name"),
    ("describeModel", {"name": None}, "name"),
    ("predict", {"input_data_url": "file:///x.npy"}, "model_name"),
    ("predict", {"model_name": "h-p"}, "input_data_url"),
    ("predict", {"model_name": "h-p", "input_data_url": "http://x/y.png"}, "input_data_url"),
    ("predict", {"model_name": "h-p", "input_data_url": "file:///x.npy", "output_url": 3},
     "output_url"),
    ("predict", {"model_name": "h-p", "input_data_url": "file:///x.npy", "capture_enable": "y"},
     "capture_enable"),
    ("captureData", {"model_name": "h-p", "input_data_url": "file:///x.npy",
                     "capture_id": ""}, "capture_id"),
    ("captureData", {"model_name": "h-p", "input_data_url": "file:///x.npy",
                     "inference_timestamp": "now"}, "inference_timestamp"),
    ("captureData", {"model_name": "h-p", "input_data_url": "file:///x.npy",
                     "aux_data": [{"name": "a", "encoding": "CSV", "b64_data": "!!"}]},
     "aux_data[0].b64_data"),
    ("getCaptureDataStatus", {}, "capture_id"),
])
def test_invalid_params_name_the_parameter(http: HttpBridge, method: str, params: Any,
                                           param: str) -> None:
    error = error_of(http.call(method, params), -32602)
    assert error["data"]["param"] == param
    assert f"`{param}`" in error["message"]


def test_agent_errors_carry_the_grpc_status(http: HttpBridge, folders: Folders) -> None:
    np.save(folders.data / "h-e.npy", np.ones((1, 4), np.float32))
    error = error_of(http.call("predict", {"model_name": "h-not-loaded",
                                           "input_data_url": "file:///h-e.npy"}), -32000)
    assert error["data"]["grpc_status"] == "NOT_FOUND" and error["data"]["grpc_code"] == 5
    assert "h-not-loaded" in error["data"]["details"]
    http.result("loadModel", {"name": "h-twice", "url": "affine-1.0.tar.gz"})
    error = error_of(http.call("loadModel", {"name": "h-twice", "url": "affine-1.0.tar.gz"}),
                     -32000)
    assert error["data"]["grpc_status"] == "ALREADY_EXISTS"
    error = error_of(http.call("loadModel", {"name": "h-junk", "url": "junk.tar.gz"}), -32000)
    assert error["data"]["grpc_status"] == "FAILED_PRECONDITION"
    np.save(folders.data / "h-wrong.npy", np.ones((1, 5), np.float32))
    error = error_of(http.call("predict", {"model_name": "h-twice",
                                           "input_data_url": "file:///h-wrong.npy"}), -32000)
    assert error["data"]["grpc_status"] == "INVALID_ARGUMENT"
    error = error_of(http.call("getCaptureDataStatus", {"capture_id": "never-sent"}), -32000)
    assert error["data"]["grpc_status"] == "NOT_FOUND"


def test_storage_errors(http: HttpBridge) -> None:
    http.result("loadModel", {"name": "h-storage", "url": "affine-1.0.tar.gz"})
    error = error_of(http.call("predict", {"model_name": "h-storage",
                                           "input_data_url": "file:///missing.npy"}), -32001)
    assert error["data"]["url"] == "file:///missing.npy" and "no such file" in error["message"]
    error = error_of(http.call("loadModel", {"name": "h-miss", "url": "missing.tar.gz"}), -32001)
    # No bucket is configured for this bridge: s3 urls say so.
    error = error_of(http.call("predict", {"model_name": "h-storage",
                                           "input_data_url": "s3:///x.npy"}), -32001)
    assert "SAPT_AWS_S3_BUCKET" in error["message"]


def test_path_escapes_are_refused(http: HttpBridge, folders: Folders) -> None:
    http.result("loadModel", {"name": "h-escape", "url": "affine-1.0.tar.gz"})
    os.symlink(folders.outside / "secret.npy", folders.data / "h-link.npy")
    os.symlink(folders.outside, folders.data / "h-out-dir")
    os.symlink(folders.outside / "outside.tar.gz", folders.models / "h-link.tar.gz")
    before = sorted(p.name for p in folders.outside.iterdir())
    for params, param in [
        ({"input_data_url": "file:///../outside/secret.npy"}, "input_data_url"),
        ({"input_data_url": f"file:///{folders.outside / 'secret.npy'}"}, "input_data_url"),
        ({"input_data_url": "file:///%2e%2e/outside/secret.npy"}, "input_data_url"),
        ({"input_data_url": "file:///h-link.npy"}, "input_data_url"),
        ({"input_data_url": "file:///h-out-dir/secret.npy"}, "input_data_url"),
        ({"input_data_url": "file:///h-e.npy", "output_url": "file:///../outside/o.npy"},
         "output_url"),
        ({"input_data_url": "file:///h-e.npy", "output_url": "file:///h-out-dir/o.npy"},
         "output_url"),
        ({"input_data_url": "s3:///../x.npy"}, "input_data_url"),
    ]:
        np.save(folders.data / "h-e.npy", np.ones((1, 4), np.float32))
        error = error_of(http.call("predict", {"model_name": "h-escape", **params}), -32602)
        assert error["data"]["param"] == param, error
    for url in ("../outside/outside.tar.gz", str(folders.outside / "outside.tar.gz"),
                "h-link.tar.gz"):
        error = error_of(http.call("loadModel", {"name": "h-escape2", "url": url}), -32602)
        assert error["data"]["param"] == "url"
    assert sorted(p.name for p in folders.outside.iterdir()) == before


def test_capture(http: HttpBridge, folders: Folders) -> None:
    http.result("loadModel", {"name": "h-capture", "url": "affine-1.0.tar.gz"})
    np.save(folders.data / "h-c.npy", np.ones((2, 4), np.float32))
    result = http.result("predict", {
        "model_name": "h-capture", "input_data_url": "file:///h-c.npy", "capture_enable": True,
        "aux_data": [{"name": "site", "encoding": "CSV", "b64_data": "c2l0ZS1hCg=="}]})
    capture_id = result["capture_id"]
    assert "url" not in result["outputs"][0]  # no output_url: nothing written

    def status(capture: str) -> str | None:
        state: str = http.result("getCaptureDataStatus", {"capture_id": capture})["status"]
        return state if state != "IN_PROGRESS" else None

    assert wait_for(lambda: status(capture_id), 30, "the capture") == "SUCCESS"
    y, _ = affine_reference(np.ones((2, 4), np.float32))
    np.save(folders.data / "h-cy.npy", y)
    np.savez(folders.data / "h-cout.npz", y=y, s=y.sum(axis=1))
    captured = http.result("captureData", {
        "model_name": "h-capture", "capture_id": "h-capture-1",
        "input_data_url": "file:///h-c.npy", "output_data_url": "file:///h-cout.npz",
        "inference_timestamp": 1_700_000_000.25})
    assert captured == {"capture_id": "h-capture-1"}
    assert wait_for(lambda: status("h-capture-1"), 30, "the capture") == "SUCCESS"
    # The original translator's spelling of the status method works too.
    assert http.result("getDataCaptureStatus", {"capture_id": "h-capture-1"})[
        "status"] == "SUCCESS"
    error = error_of(http.call("captureData", {
        "model_name": "h-capture", "capture_id": "h-capture-1",
        "input_data_url": "file:///h-c.npy"}), -32000)
    assert error["data"]["grpc_status"] == "ALREADY_EXISTS"


def test_sigterm_stops_the_http_bridge(agent: AgentProcess, folders: Folders) -> None:
    bridge = start_http_bridge(folders.config(agent.socket_path), folders.base / "term.log")
    assert bridge.result("listModels") is not None
    assert bridge.stop() == 0
    assert "stopped on SIGTERM" in bridge.log.read_text()


def test_bad_config_exits_2_naming_the_key(folders: Folders) -> None:
    config = folders.base / "bad.json"
    config.write_text('{"port": "many"}')
    done = subprocess.run([*bridge_command(), "--config", str(config)], capture_output=True,
                          env=bridge_env({}), timeout=60)
    assert done.returncode == 2
    assert b"port (env EDGEFLEET_BRIDGE_PORT)" in done.stderr


# -- stdio ----------------------------------------------------------------------------------------

class StdioBridge:
    """``edgefleet bridge --stdio`` with a thread collecting its output lines."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [*bridge_command(), "--stdio", "--config", str(config)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, env=bridge_env(env or {}))
        self.lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def send(self, message: Any) -> None:
        assert self.process.stdin is not None
        text = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.process.stdin.write(text + b"\n")
        self.process.stdin.flush()

    def receive(self) -> Any:
        try:
            line = self.lines.get(timeout=60)
        except queue.Empty:
            raise AssertionError(f"no answer; bridge log: {self.log.read_text()}") from None
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        return json.loads(line)

    def call(self, method: str, params: Any = None, request_id: Any = 1) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        answer = self.receive()
        assert answer["id"] == request_id
        return answer

    def close(self) -> int:
        """End its input (if still open), wait for it to exit; the exit status."""
        assert self.process.stdin is not None and self.process.stdout is not None
        if not self.process.stdin.closed:
            self.process.stdin.close()
        status = self.process.wait(30)
        self._reader.join(10)
        self.process.stdout.close()
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.close()


@pytest.fixture
def stdio(agent: AgentProcess, folders: Folders) -> Iterator[StdioBridge]:
    bridge = StdioBridge(folders.config(agent.socket_path), folders.base / "stdio.log")
    yield bridge
    bridge.kill()


def test_every_method_over_stdio(stdio: StdioBridge, folders: Folders) -> None:
    assert isinstance(stdio.call("listModels")["result"], list)
    loaded = stdio.call("loadModel", {"name": "s-affine", "url": "affine-1.0.tar.gz"}, "a")
    assert loaded["result"]["name"] == "s-affine"
    assert stdio.call("describeModel", {"name": "s-affine"})["result"]["name"] == "s-affine"
    np.save(folders.data / "s-x.npy", np.ones((1, 4), np.float32))
    predicted = stdio.call("predict", {"model_name": "s-affine", "input_data_url":
                                       "file:///s-x.npy", "output_url": "file:///s-y.npy",
                                       "capture_enable": True, "capture_id": "s-cap"}, 2)
    assert predicted["result"]["capture_id"] == "s-cap"
    y, _ = affine_reference(np.ones((1, 4), np.float32))
    np.testing.assert_array_equal(np.load(folders.data / "s-y-y.npy"), y)
    captured = stdio.call("captureData", {"model_name": "s-affine", "capture_id": "s-cap-2",
                                          "input_data_url": "file:///s-x.npy"}, 3)
    assert captured["result"] == {"capture_id": "s-cap-2"}
    status = stdio.call("getCaptureDataStatus", {"capture_id": "s-cap"}, 4)["result"]["status"]
    assert status in ("IN_PROGRESS", "SUCCESS")
    # A notification is answered with nothing: the next line is the next request's.
    stdio.send({"jsonrpc": "2.0", "method": "unloadModel", "params": {"name": "s-affine"}})
    stdio.send(b"")  # empty lines are skipped
    listed = stdio.call("listModels", request_id="after")
    assert "s-affine" not in {m["name"] for m in listed["result"]}
    assert stdio.call("unloadModel", {"name": "s-affine"})["error"]["data"][
        "grpc_status"] == "NOT_FOUND"
    assert stdio.close() == 0


def test_stdio_batches_and_errors(stdio: StdioBridge) -> None:
    stdio.send(b"{not json")
    assert stdio.receive()["error"]["code"] == -32700
    stdio.send([])
    assert stdio.receive()["error"]["code"] == -32600
    stdio.send([{"jsonrpc": "2.0", "method": "listModels"}])  # notifications only: no line
    stdio.send([{"jsonrpc": "2.0", "id": 1, "method": "listModels"},
                {"jsonrpc": "2.0", "id": 2, "method": "predict", "params": {"model_name": "x"}},
                {"jsonrpc": "2.0", "id": 3, "method": "nope"}])
    answers = stdio.receive()
    assert [a["id"] for a in answers] == [1, 2, 3]
    assert [a.get("error", {}).get("code") for a in answers] == [None, -32602, -32601]
    stdio.send(b'{"jsonrpc": "2.0", "id": "big", "method": "listModels", "x": "'
               + b"y" * (2 << 20) + b'"}')
    assert stdio.receive()["error"]["code"] == -32600
    assert stdio.call("listModels", request_id="still-alive")["id"] == "still-alive"
    assert stdio.close() == 0


def test_stdio_sigterm_while_idle(stdio: StdioBridge) -> None:
    assert "result" in stdio.call("listModels")
    stdio.process.send_signal(signal.SIGTERM)
    assert stdio.process.wait(30) == 0
    assert stdio.close() == 0
    assert "received SIGTERM" in stdio.log.read_text()


def test_agent_not_running(folders: Folders) -> None:
    bridge = StdioBridge(folders.config(folders.base / "no-agent.sock"),
                         folders.base / "no-agent.log")
    error = error_of(bridge.call("listModels"), -32000)
    assert error["data"]["grpc_status"] == "UNAVAILABLE"
    assert "no-agent.sock" in error["message"]
    assert bridge.close() == 0


# -- S3 (SeaweedFS) -------------------------------------------------------------------------------

MODELS_DIR = "DEMO-Sagemaker-Edge/compilation-output"
DATA_DIR = "sagemaker/data"
BUCKET = "bridge-bucket"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_bridge(agent: AgentProcess, folders: Folders, s3: S3Server) -> Iterator[HttpBridge]:
    # Configured as a gateway of the original translator was: SAPT_* variables, with the
    # escaped slash its .env needed; credentials through boto3's own chain (AWS_*).
    bridge = start_http_bridge(
        folders.config(agent.socket_path, cache_folder=str(folders.base / "s3-cache")),
        folders.base / "s3.log", env={
            "SAPT_AWS_S3_BUCKET": BUCKET, "SAPT_AWS_S3_MODELS_DIR": MODELS_DIR.replace("/", "\\/"),
            "SAPT_AWS_S3_DATA_DIR": DATA_DIR, "SAPT_AWS_REGION": "us-east-1",
            "EDGEFLEET_BRIDGE_S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    yield bridge
    assert bridge.stop() == 0, bridge.log.read_text()


def test_load_from_s3_downloads_once(s3_bridge: HttpBridge, s3: S3Server, folders: Folders,
                                     packages: Packages) -> None:
    client = s3.client()
    key = f"{MODELS_DIR}/keras-model-1.0.tar.gz"
    client.upload_file(str(packages.affine), BUCKET, key)
    params = {"name": "demo-keras", "s3_filename": "keras-model-1.0.tar.gz"}
    first = s3_bridge.result("loadModel", params)
    assert first["package"] == {"source": "s3", "s3_filename": "keras-model-1.0.tar.gz",
                                "cached": False}
    cached = folders.base / "s3-cache" / "packages" / "keras-model-1.0.tar.gz"
    assert cached.read_bytes() == packages.affine.read_bytes()
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no partial files
    s3_bridge.result("unloadModel", {"name": "demo-keras"})
    client.delete_object(Bucket=BUCKET, Key=key)  # a second download would now fail
    again = s3_bridge.result("loadModel", params)
    assert again["package"]["cached"] is True and again["url"] == first["url"]
    s3_bridge.result("unloadModel", {"name": "demo-keras"})


def test_s3_missing_package(s3_bridge: HttpBridge, folders: Folders) -> None:
    error = error_of(s3_bridge.call("loadModel", {"name": "s3-miss",
                                                  "s3_filename": "absent-1.0.tar.gz"}), -32001)
    assert error["data"]["url"] == f"s3://{BUCKET}/{MODELS_DIR}/absent-1.0.tar.gz"
    assert "NoSuchKey" in error["message"]
    assert not (folders.base / "s3-cache" / "packages" / "absent-1.0.tar.gz").exists()
    assert not list((folders.base / "s3-cache").rglob("*.partial"))
    error = error_of(s3_bridge.call("loadModel", {"name": "s3-miss",
                                                  "s3_filename": "../x/a.tar.gz"}), -32602)
    assert error["data"]["param"] == "s3_filename"


def test_predict_from_and_to_s3(s3_bridge: HttpBridge, s3: S3Server, folders: Folders) -> None:
    s3_bridge.result("loadModel", {"name": "s3-image", "url": "image-1.0.tar.gz"})
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=f"{DATA_DIR}/cat.png",
                      Body=png((200, 100, 50), (320, 240)))
    result = s3_bridge.result("predict", {"model_name": "s3-image",
                                          "input_data_url": "s3:///cat.png",
                                          "output_url": "s3:///out/cat.npy"})
    assert [o["url"] for o in result["outputs"]] == ["s3:///out/cat-m.npy",
                                                      "s3:///out/cat-y.npy"]
    body = client.get_object(Bucket=BUCKET, Key=f"{DATA_DIR}/out/cat-m.npy")["Body"].read()
    np.testing.assert_allclose(np.load(io.BytesIO(body)), [[200, 100, 50]], rtol=1e-6)
    error = error_of(s3_bridge.call("predict", {"model_name": "s3-image",
                                                "input_data_url": "s3:///nothing.png"}), -32001)
    assert error["data"]["url"] == "s3:///nothing.png" and "NoSuchKey" in error["message"]
    s3_bridge.result("unloadModel", {"name": "s3-image"})
