"""Capture records: the JSON-lines format of a batch file, its encoder and its decoder, and the
captured values they hold. The agent writes batch files with it (:mod:`edgefleet.agent.capture`);
the control plane reads them back (:mod:`edgefleet.fleet.capture_index`).

The format is the SageMaker Edge Manager agent's (shared/spec/agent-api.md, "Capture records"),
one JSON object per line::

    {"eventVersion": "0",
     "eventMetadata": {"eventId", "inferenceTime": "YYYY-MM-DDTHH:MM:SS.ffffffZ",
                       "deviceFleetName", "deviceId", "modelName", "modelVersion",
                       "sampled": false},
     "deviceFleetInputs": [entry, ...], "deviceFleetOutputs": [entry, ...],
     "deviceFleetAuxiliaryInputs": [entry, ...], "deviceFleetAuxiliaryOutputs": [entry, ...]}

    entry = {"name", "mode": "Input" | "Output", "observedContentType",
             "encoding": "BASE64", "data": <base64>}        payload <= embed limit
          | {..., "encoding": "NONE", "data-ref": <ref>}    larger payload, stored as a raw file

``eventMetadata.sampled`` is edgefleet's addition: ``true`` when the agent captured a Predict call
by itself (``edgefleet_capture_sampling``), ``false`` when an application called CaptureData.

``observedContentType`` is ``Tensor[<DTYPE>; <d0>, <d1>, ...]`` for tensors (what existing analysis
code parses with ``Tensor\\[(\\w+); ([\\d, ]+)\\]``) and a media type for auxiliary data, from the
encoding the client declared: CSV ``text/csv``, JSON ``application/json``, NONE
``application/octet-stream``, BASE64 ``application/base64`` (the client's bytes are base64 text;
they are stored as sent, encoded once more like every payload).

A ``data-ref`` is what the sink that stored the batch says (:meth:`CaptureSink.data_ref`): a path
relative to the batch file's folder on disk (and after a periodic upload, in the bucket), or an
``s3://bucket/key`` URI when the batch went to the bucket directly.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from edgefleet.errors import InvalidArgument
from edgefleet.tensors import DATA_TYPES, data_type_from_name


class AuxiliaryEncoding(enum.IntEnum):
    """Encoding of auxiliary capture data; wire values from the spec's ``Encoding`` enum."""

    CSV = 0
    JSON = 1
    NONE = 2
    BASE64 = 3


@dataclass(frozen=True, slots=True)
class CapturedTensor:
    """A tensor captured by value (shared memory already copied out).

    Attributes:
        name: tensor name.
        data_type: wire dtype enum value.
        shape: dimensions.
        data: C-contiguous bytes in host byte order.
    """

    name: str
    data_type: int
    shape: tuple[int, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class CapturedAuxiliary:
    """Auxiliary data captured by value."""

    name: str
    encoding: AuxiliaryEncoding
    data: bytes


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """One validated capture, ready for the capture pipeline.

    Attributes:
        capture_id: the client's id (non-empty, at most 256 chars).
        model_alias: the loaded model's alias.
        model_version: that model's package version.
        inference_time_ns: inference time, nanoseconds since the Unix epoch (UTC).
        input_tensors, output_tensors: captured tensors.
        auxiliary_inputs, auxiliary_outputs: captured auxiliary data.
        sampled: True when the agent captured a Predict call by itself (sampling), False when
            the client called CaptureData.
    """

    capture_id: str
    model_alias: str
    model_version: str
    inference_time_ns: int
    input_tensors: tuple[CapturedTensor, ...] = ()
    output_tensors: tuple[CapturedTensor, ...] = ()
    auxiliary_inputs: tuple[CapturedAuxiliary, ...] = ()
    auxiliary_outputs: tuple[CapturedAuxiliary, ...] = field(default=())
    sampled: bool = False


#: ``eventVersion`` of every record edgefleet writes.
EVENT_VERSION = "0"

#: Record key of each of the four entry lists, with the ``mode`` of their entries.
_SECTIONS = (
    ("deviceFleetInputs", "Input"),
    ("deviceFleetOutputs", "Output"),
    ("deviceFleetAuxiliaryInputs", "Input"),
    ("deviceFleetAuxiliaryOutputs", "Output"),
)

#: Short role names used in raw payload file names, one per section.
_ROLES = ("input", "output", "auxin", "auxout")

_AUX_CONTENT_TYPES = {
    AuxiliaryEncoding.CSV: "text/csv",
    AuxiliaryEncoding.JSON: "application/json",
    AuxiliaryEncoding.NONE: "application/octet-stream",
    AuxiliaryEncoding.BASE64: "application/base64",
}
_AUX_ENCODINGS = {value: key for key, value in _AUX_CONTENT_TYPES.items()}

_TENSOR_TYPE = re.compile(r"Tensor\[(\w+); ([\d, ]*)\]")


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Who captured: the ``deviceFleetName`` and ``deviceId`` of every record."""

    fleet: str
    device: str


@dataclass(frozen=True, slots=True)
class BatchFile:
    """One file of an encoded batch.

    Attributes:
        key: path relative to the capture root (disk folder or bucket), ``/``-separated.
        data: the file's bytes.
    """

    key: str
    data: bytes


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """A decoded record: the capture as the agent received it, and who captured it.

    ``request.inference_time_ns`` has microsecond precision (the record's ``inferenceTime``).
    """

    request: CaptureRequest
    device: DeviceIdentity

    @property
    def input_arrays(self) -> dict[str, np.ndarray]:
        """Input tensors by name, as numpy arrays of their dtype and shape."""
        return {t.name: tensor_array(t) for t in self.request.input_tensors}

    @property
    def output_arrays(self) -> dict[str, np.ndarray]:
        """Output tensors by name, as numpy arrays of their dtype and shape."""
        return {t.name: tensor_array(t) for t in self.request.output_tensors}


def tensor_array(tensor: CapturedTensor) -> np.ndarray:
    """A read-only numpy view of a captured tensor's bytes, with its dtype and shape."""
    return np.frombuffer(tensor.data, dtype=DATA_TYPES[tensor.data_type][1]).reshape(tensor.shape)


def format_inference_time(time_ns: int) -> str:
    """``inferenceTime`` of a record: UTC, microseconds, e.g. ``2026-11-23T19:12:31.000123Z``."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return f"{_utc_second(seconds)}.{nanos // 1000:06d}Z"


@lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    # Captures arrive in time order, so consecutive records share their second: formatting a
    # datetime costs about as much as encoding the rest of a 1 KB record.
    return f"{datetime.fromtimestamp(seconds, tz=UTC):%Y-%m-%dT%H:%M:%S}"


def parse_inference_time(text: str) -> int:
    """Nanoseconds since the Unix epoch of an ``inferenceTime`` string.

    Raises:
        InvalidArgument: not of the form ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
    """
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidArgument(
            f"inferenceTime {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ") from None
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1000


def encode_batch(requests: Sequence[CaptureRequest], *, key: str, device: DeviceIdentity,
                 embed_limit: int, data_ref: Callable[[str], str]) -> list[BatchFile]:
    """Encode requests as one JSON-lines batch file plus raw files for large payloads.

    Args:
        requests: the captures, in the order of the lines.
        key: the batch file's key, ending in ``.jsonl``; raw files go beside it, named
            ``<stem>.<line>.<role>.<position>.bin`` so that encoding the same batch again gives
            the same keys (re-deliveries overwrite instead of duplicating).
        device: fleet and device name written in every record.
        embed_limit: payloads up to this many bytes are embedded as base64.
        data_ref: turns a raw file's key into the record's ``data-ref`` (the sink decides).

    Returns:
        The raw payload files first, the ``.jsonl`` file last, so that a sink writing them in
        order never publishes a record whose payload is missing.
    """
    stem = key.removesuffix(".jsonl")
    raw: list[BatchFile] = []
    lines = []
    for line, request in enumerate(requests):
        record: dict[str, Any] = {
            "eventVersion": EVENT_VERSION,
            "eventMetadata": {
                "eventId": request.capture_id,
                "inferenceTime": format_inference_time(request.inference_time_ns),
                "deviceFleetName": device.fleet,
                "deviceId": device.device,
                "modelName": request.model_alias,
                "modelVersion": request.model_version,
                "sampled": request.sampled,
            },
        }
        parts: tuple[Sequence[CapturedTensor | CapturedAuxiliary], ...] = (
            request.input_tensors, request.output_tensors,
            request.auxiliary_inputs, request.auxiliary_outputs)
        for (section, mode), role, items in zip(_SECTIONS, _ROLES, parts, strict=True):
            entries = []
            for position, item in enumerate(items):
                entry: dict[str, Any] = {"name": item.name, "mode": mode,
                                         "observedContentType": _content_type(item)}
                if len(item.data) <= embed_limit:
                    entry["encoding"] = "BASE64"
                    entry["data"] = binascii.b2a_base64(item.data, newline=False).decode("ascii")
                else:
                    raw_key = f"{stem}.{line}.{role}.{position}.bin"
                    raw.append(BatchFile(raw_key, item.data))
                    entry["encoding"] = "NONE"
                    entry["data-ref"] = data_ref(raw_key)
                entries.append(entry)
            record[section] = entries
        text = orjson.dumps(record)  # compact JSON, several times json's speed
        if not text.isascii():
            # Lines stay ASCII, as the original agent wrote them: raw U+0085, U+2028 or U+2029
            # in a name would split the line for readers that use str.splitlines().
            text = json.dumps(record, separators=(",", ":")).encode("ascii")
        lines.append(text)
    lines.append(b"")
    return [*raw, BatchFile(key, b"\n".join(lines))]


def _content_type(item: CapturedTensor | CapturedAuxiliary) -> str:
    if isinstance(item, CapturedTensor):
        return _tensor_content_type(item.data_type, item.shape)
    return _AUX_CONTENT_TYPES[item.encoding]


@lru_cache(maxsize=256)
def _tensor_content_type(data_type: int, shape: tuple[int, ...]) -> str:
    dims = ", ".join(str(d) for d in shape)
    return f"Tensor[{DATA_TYPES[data_type][0]}; {dims}]"


def decode_batch(data: bytes, load: Callable[[str], bytes]) -> Iterator[CaptureRecord]:
    """Decode the records of a batch file.

    Args:
        data: the ``.jsonl`` file's bytes.
        load: returns the bytes of a raw payload file given an entry's ``data-ref``.

    Raises:
        InvalidArgument: a line is not a capture record of this format (the message names the
            line and the field).
    """
    for number, line in enumerate(data.split(b"\n"), start=1):  # only \n ends a line
        if line.strip():
            try:
                yield _decode_record(orjson.loads(line), load)
            except (KeyError, TypeError, ValueError) as error:
                raise InvalidArgument(f"batch line {number} is not a capture record: "
                                      f"{type(error).__name__}: {error}") from None


def read_batch_file(path: Path) -> list[CaptureRecord]:
    """Decode a batch file on disk; relative ``data-ref`` paths resolve beside it.

    Raises:
        OSError: the file or a referenced raw file cannot be read.
        InvalidArgument: a line is not a capture record.
    """
    folder = path.parent
    return list(decode_batch(path.read_bytes(), lambda ref: (folder / ref).read_bytes()))


def _decode_record(record: dict[str, Any], load: Callable[[str], bytes]) -> CaptureRecord:
    meta = record["eventMetadata"]
    sections = []
    for section, _ in _SECTIONS:
        sections.append([(entry, _payload(entry, load)) for entry in record[section]])
    inputs, outputs, aux_in, aux_out = sections
    request = CaptureRequest(
        capture_id=meta["eventId"],
        model_alias=meta["modelName"],
        model_version=meta["modelVersion"],
        inference_time_ns=parse_inference_time(meta["inferenceTime"]),
        input_tensors=tuple(_tensor(entry, data) for entry, data in inputs),
        output_tensors=tuple(_tensor(entry, data) for entry, data in outputs),
        auxiliary_inputs=tuple(_auxiliary(entry, data) for entry, data in aux_in),
        auxiliary_outputs=tuple(_auxiliary(entry, data) for entry, data in aux_out),
        sampled=bool(meta.get("sampled", False)),
    )
    return CaptureRecord(request, DeviceIdentity(meta["deviceFleetName"], meta["deviceId"]))


def _payload(entry: dict[str, Any], load: Callable[[str], bytes]) -> bytes:
    if entry["encoding"] == "BASE64":
        return base64.b64decode(entry["data"], validate=True)
    if entry["encoding"] == "NONE":
        return load(entry["data-ref"])
    raise ValueError(f"entry {entry['name']!r}: unknown encoding {entry['encoding']!r}")


def _tensor(entry: dict[str, Any], data: bytes) -> CapturedTensor:
    match = _TENSOR_TYPE.fullmatch(entry["observedContentType"])
    if match is None:
        raise ValueError(f"entry {entry['name']!r}: observedContentType "
                         f"{entry['observedContentType']!r} is not Tensor[DTYPE; dims]")
    dims = tuple(int(d) for d in match.group(2).split(",") if d.strip())
    return CapturedTensor(entry["name"], data_type_from_name(match.group(1)), dims, data)


def _auxiliary(entry: dict[str, Any], data: bytes) -> CapturedAuxiliary:
    return CapturedAuxiliary(entry["name"], _AUX_ENCODINGS[entry["observedContentType"]], data)
