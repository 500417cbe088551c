"""The bridge's JSON-RPC methods, with the original Pelion translator's names and parameters.

=====================  =============================================================================
method                 parameters (``?``: optional)
=====================  =============================================================================
listModels             none
describeModel          ``name``
loadModel              ``name`` and either ``s3_filename`` (a package under the models prefix of
                       the bucket; downloaded once into the cache) or ``url`` (a package in the
                       local models folder)
unloadModel            ``name``
predict                ``model_name``, ``input_data_url``, ``output_url?``, ``layout?``,
                       ``scale?``, ``capture_enable?``, ``capture_id?``, ``aux_data?``
captureData            ``model_name``, ``input_data_url``, ``output_data_url?``, ``capture_id?``,
                       ``inference_timestamp?``, ``aux_data?``
getCaptureDataStatus   ``capture_id`` (also as ``getDataCaptureStatus``, the original's spelling)
=====================  =============================================================================

Results are JSON objects (listModels: an array of them); docs/bridge.md shows each. A model is
``{"name", "handle", "url", "input_tensor_metadatas", "output_tensor_metadatas"}`` and tensor
metadata is ``{"name", "dtype", "type", "shape"}``: ``type`` is the wire ``DataType`` number the
original translator returned, ``dtype`` its name.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from edgefleet.bridge.client import AgentClient, from_tensor, spec_of, to_tensor
from edgefleet.bridge.media import LAYOUTS, decode_inputs, encode_outputs
from edgefleet.bridge.paths import DataUrl, parse_data_url
from edgefleet.bridge.protocol import InvalidParams, Method, Request, named_params
from edgefleet.bridge.storage import Storage
from edgefleet.errors import InvalidArgument
from edgefleet.names import check_alias
from edgefleet.proto import agent_pb2 as pb
from edgefleet.tensors import TensorSpec

log = logging.getLogger(__name__)

#: Longest capture id accepted, in characters (the agent's own limit is the same).
MAX_CAPTURE_ID_CHARS = 256
#: Encodings of ``aux_data`` entries (the wire ``Encoding`` enum).
ENCODINGS = ("CSV", "JSON", "NONE", "BASE64")


def _get(params: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str,
         *, required: bool = True) -> Any:
    if name not in params or params[name] is None:
        if required:
            raise InvalidParams(name, "is required")
        return None
    value = params[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidParams(name, f"must be {what}")
    return value


def _alias(params: dict[str, Any], name: str) -> str:
    value: str = _get(params, name, str, "a model name (string)")
    if not value:
        raise InvalidParams(name, "must not be empty")
    try:
        return check_alias(value)
    except InvalidArgument as error:
        raise InvalidParams(name, error.message.removeprefix("model name ")) from None


def _capture_id(params: dict[str, Any]) -> str:
    value: str | None = _get(params, "capture_id", str, "a string", required=False)
    if value is None:
        return str(uuid.uuid4())
    if not value or len(value) > MAX_CAPTURE_ID_CHARS:
        raise InvalidParams("capture_id", f"must be 1 to {MAX_CAPTURE_ID_CHARS} characters")
    return value


def metadata_dict(spec: TensorSpec) -> dict[str, Any]:
    """``{"name", "dtype", "type", "shape"}`` of one tensor (``type``: the wire enum number)."""
    return {"name": spec.name, "dtype": spec.dtype_name, "type": spec.data_type,
            "shape": list(spec.shape)}


def model_dict(model: Any) -> dict[str, Any]:
    """A wire ``Model`` as the JSON object the methods return."""
    return {"name": model.name, "handle": model.handle, "url": model.url,
            "input_tensor_metadatas": [metadata_dict(spec_of(m))
                                       for m in model.input_tensor_metadatas],
            "output_tensor_metadatas": [metadata_dict(spec_of(m))
                                        for m in model.output_tensor_metadatas]}


def _aux_data(params: dict[str, Any]) -> list[Any]:
    entries = _get(params, "aux_data", list, "an array of {name, encoding, b64_data}",
                   required=False) or []
    result = []
    for index, entry in enumerate(entries):
        where = f"aux_data[{index}]"
        if not isinstance(entry, dict):
            raise InvalidParams(where, "must be an object {name, encoding, b64_data}")
        name = _get(entry, "name", str, "a string") if "name" in entry else None
        encoding = entry.get("encoding", "NONE")
        data = entry.get("b64_data")
        if not name or encoding not in ENCODINGS or not isinstance(data, str):
            raise InvalidParams(where, f"must have a non-empty `name`, an `encoding` in "
                                f"{', '.join(ENCODINGS)} and base64 `b64_data`")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParams(f"{where}.b64_data", "is not valid base64") from None
        result.append(pb.AuxiliaryData(name=name, encoding=pb.Encoding.Value(encoding),
                                       byte_data=raw))
    return result


@dataclass(frozen=True, slots=True)
class _DecodeOptions:
    """``layout`` and ``scale`` of image inputs (see :mod:`edgefleet.bridge.media`)."""

    layout: str | None
    scale: float

    @classmethod
    def of(cls, params: dict[str, Any]) -> _DecodeOptions:
        layout = _get(params, "layout", str, f"one of {', '.join(LAYOUTS)}", required=False)
        if layout is not None and layout not in LAYOUTS:
            raise InvalidParams("layout", f"must be one of {', '.join(LAYOUTS)}")
        scale = _get(params, "scale", (int, float), "a number", required=False)
        if scale is not None and not math.isfinite(scale):
            raise InvalidParams("scale", "must be a finite number")
        return cls(layout, 1.0 if scale is None else float(scale))


class BridgeMethods:
    """The methods over one agent client and one storage.

    Args:
        agent: the agent's gRPC client.
        storage: the data folder, bucket and package cache.
    """

    def __init__(self, agent: AgentClient, storage: Storage) -> None:
        self._agent = agent
        self._storage = storage

    def table(self) -> dict[str, Method]:
        """Method name -> method, for :class:`~edgefleet.bridge.protocol.Dispatcher`."""
        return {
            "listModels": self.list_models,
            "describeModel": self.describe_model,
            "loadModel": self.load_model,
            "unloadModel": self.unload_model,
            "predict": self.predict,
            "captureData": self.capture_data,
            "getCaptureDataStatus": self.get_capture_data_status,
            "getDataCaptureStatus": self.get_capture_data_status,
        }

    def list_models(self, request: Request) -> list[dict[str, Any]]:
        """Every loaded model (ListModels), as :func:`model_dict` objects."""
        named_params(request)
        return [model_dict(model) for model in self._agent.list_models()]

    def describe_model(self, request: Request) -> dict[str, Any]:
        """Loaded model ``name`` (DescribeModel), as a :func:`model_dict` object."""
        params = named_params(request, frozenset({"name"}))
        return model_dict(self._agent.describe(_alias(params, "name")))

    def load_model(self, request: Request) -> dict[str, Any]:
        """Load a package under alias ``name``, from ``s3_filename`` or local ``url``.

        Returns:
            The loaded model (:func:`model_dict`) plus ``package``: ``{"source": "s3", "key",
            "cached"}`` or ``{"source": "local", "path"}``.

        Raises:
            InvalidParams: bad name, neither or both of ``s3_filename`` and ``url``, an unsafe
                file name, or a file that is not a package archive or folder.
            StorageError: the package cannot be downloaded or is missing.
            AgentError: LoadModel failed (e.g. ALREADY_EXISTS, FAILED_PRECONDITION for a bad
                signature).
        """
        params = named_params(request, frozenset({"name", "s3_filename", "url"}))
        name = _alias(params, "name")
        s3_filename = _get(params, "s3_filename", str, "a file name (string)", required=False)
        url = _get(params, "url", str, "a package path (string)", required=False)
        if (s3_filename is None) == (url is None):
            raise InvalidParams("s3_filename", "or `url` is required (exactly one of them): "
                                "s3_filename names a package in the bucket's models folder, url "
                                "a package in the local models folder")
        package: dict[str, Any]
        if s3_filename is not None:
            if not s3_filename.endswith((".tar.gz", ".tgz")):
                raise InvalidParams("s3_filename", "must name a package archive (.tar.gz or "
                                    ".tgz), e.g. keras-model-1.0.tar.gz")
            path, cached = self._storage.cached_package(s3_filename, "s3_filename")
            package = {"source": "s3", "s3_filename": s3_filename, "cached": cached}
        else:
            path = self._storage.local_package(url.removeprefix("file:///"), "url")
            package = {"source": "local", "url": url}
        model = model_dict(self._agent.load(name, path))
        log.info("loaded model %s from %s", name, path)
        return {**model, "package": package}

    def unload_model(self, request: Request) -> dict[str, Any]:
        """Unload model ``name`` (UnLoadModel); returns ``{"name", "unloaded": true}``."""
        params = named_params(request, frozenset({"name"}))
        name = _alias(params, "name")
        self._agent.unload(name)
        return {"name": name, "unloaded": True}

    def _read_inputs(self, url: DataUrl, options: _DecodeOptions, specs: list[TensorSpec],
                     param: str) -> list[tuple[str, Any]]:
        data = self._storage.read(url, param)
        return decode_inputs(data, url.suffix, specs, param=param, layout=options.layout,
                             scale=options.scale)

    def predict(self, request: Request) -> dict[str, Any]:
        """Run ``model_name`` on the file at ``input_data_url``; write outputs to ``output_url``.

        Returns:
            ``{"model_name", "outputs": [{"name", "dtype", "type", "shape", "url"}]}`` (``url``
            only with ``output_url``), plus ``capture_id`` when ``capture_enable`` is true.

        Raises:
            InvalidParams: a missing or wrong parameter, an unsafe URL, an input file that does
                not decode or fit the model.
            StorageError: input missing or unreadable, output not writable.
            AgentError: DescribeModel, Predict or CaptureData failed (NOT_FOUND: not loaded).
        """
        params = named_params(request, frozenset({
            "model_name", "input_data_url", "output_url", "layout", "scale", "capture_enable",
            "capture_id", "aux_data"}))
        name = _alias(params, "model_name")
        source = parse_data_url(params.get("input_data_url"), "input_data_url")
        options = _DecodeOptions.of(params)
        output: DataUrl | None = None
        if params.get("output_url") is not None:
            output = parse_data_url(params["output_url"], "output_url")
            self._storage.check_writable(output, "output_url")
        capture = _get(params, "capture_enable", bool, "true or false", required=False)
        capture_id = _capture_id(params) if capture else None
        aux = _aux_data(params) if capture else []
        model = self._agent.describe(name)
        inputs = self._read_inputs(source, options,
                                   [spec_of(m) for m in model.input_tensor_metadatas],
                                   "input_data_url")
        tensors = [to_tensor(input_name, array) for input_name, array in inputs]
        inferred = time.time_ns()
        replies = self._agent.predict(name, tensors)
        outputs = [from_tensor(reply) for reply in replies]
        described = {spec.name: metadata_dict(spec) for spec, _ in outputs}
        if output is not None:
            for url, data, names in encode_outputs(
                    [(spec.name, array) for spec, array in outputs], output):
                self._storage.write(url, data, "output_url")
                for tensor_name in names:
                    described[tensor_name]["url"] = str(url)
        result: dict[str, Any] = {"model_name": name, "outputs": list(described.values())}
        if capture_id is not None:
            self._agent.capture(pb.CaptureDataRequest(
                model_name=name, capture_id=capture_id,
                inference_timestamp=pb.Timestamp(seconds=inferred // 10**9,
                                                 nanos=inferred % 10**9),
                input_tensors=tensors, output_tensors=replies, inputs=aux))
            result["capture_id"] = capture_id
        return result

    def capture_data(self, request: Request) -> dict[str, Any]:
        """Capture an inference of ``model_name`` (CaptureData): inputs from the file at
        ``input_data_url``, outputs (optional) from ``output_data_url``, both decoded against
        the model's metadata like predict's input; ``inference_timestamp`` in seconds since the
        epoch (default: now); ``aux_data`` as auxiliary inputs.

        Returns:
            ``{"capture_id"}`` (generated when not given); poll getCaptureDataStatus with it.

        Raises:
            InvalidParams, StorageError: as for predict.
            AgentError: CaptureData failed (ALREADY_EXISTS, RESOURCE_EXHAUSTED, OUT_OF_RANGE, ...).
        """
        params = named_params(request, frozenset({
            "model_name", "input_data_url", "output_data_url", "capture_id",
            "inference_timestamp", "aux_data", "layout", "scale"}))
        name = _alias(params, "model_name")
        capture_id = _capture_id(params)
        timestamp = _get(params, "inference_timestamp", (int, float),
                         "seconds since the epoch (a number)", required=False)
        if timestamp is not None and not (math.isfinite(timestamp) and timestamp >= 0):
            raise InvalidParams("inference_timestamp", "must be a non-negative finite number")
        aux = _aux_data(params)
        source = parse_data_url(params.get("input_data_url"), "input_data_url")
        results = (parse_data_url(params["output_data_url"], "output_data_url")
                   if params.get("output_data_url") is not None else None)
        options = _DecodeOptions.of(params)
        model = self._agent.describe(name)
        inputs = self._read_inputs(source, options,
                                   [spec_of(m) for m in model.input_tensor_metadatas],
                                   "input_data_url")
        outputs = (self._read_inputs(results, options,
                                     [spec_of(m) for m in model.output_tensor_metadatas],
                                     "output_data_url") if results is not None else [])
        nanos = time.time_ns() if timestamp is None else round(timestamp * 10**9)
        self._agent.capture(pb.CaptureDataRequest(
            model_name=name, capture_id=capture_id,
            inference_timestamp=pb.Timestamp(seconds=nanos // 10**9, nanos=nanos % 10**9),
            input_tensors=[to_tensor(n, a) for n, a in inputs],
            output_tensors=[to_tensor(n, a) for n, a in outputs], inputs=aux))
        return {"capture_id": capture_id}

    def get_capture_data_status(self, request: Request) -> dict[str, Any]:
        """The status of capture ``capture_id``: ``{"capture_id", "status"}`` with status
        SUCCESS, FAILURE or IN_PROGRESS (an unknown id is an AgentError NOT_FOUND)."""
        params = named_params(request, frozenset({"capture_id"}))
        capture_id = _get(params, "capture_id", str, "a string")
        return {"capture_id": capture_id, "status": self._agent.capture_status(capture_id)}
