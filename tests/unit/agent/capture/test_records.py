"""Record encoding and decoding (records.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.captures import captured_tensor

from edgefleet.agent.capture.sinks import DiskSink
from edgefleet.agent.types import (
    AuxiliaryEncoding,
    CapturedAuxiliary,
    CapturedTensor,
    CaptureRequest,
)
from edgefleet.errors import InvalidArgument
from edgefleet.tensors import DATA_TYPES
from edgefleet.wire.capture import (
    DeviceIdentity,
    decode_batch,
    encode_batch,
    format_inference_time,
    parse_inference_time,
    read_batch_file,
)

#: 2026-11-23T19:12:31.123456Z (the time conftest's captures carry).
INFERENCE_TIME_NS = 1_795_461_151_123_456_000

MakeCapture = Callable[..., CaptureRequest]
DEVICE = DeviceIdentity("windfarm", "edge-1")
KEY = "windfarm/anomaly/2026/11/23/19/edge-1-abc-0000000000.jsonl"


def test_record_has_the_documented_fields(make_capture: MakeCapture) -> None:
    files = encode_batch([make_capture("c-1")], key=KEY, device=DEVICE, embed_limit=3072,
                         data_ref=str)
    assert [f.key for f in files] == [KEY]
    record = json.loads(files[0].data)
    assert record["eventVersion"] == "0"
    assert record["eventMetadata"] == {
        "eventId": "c-1", "inferenceTime": "2026-11-23T19:12:31.123456Z",
        "deviceFleetName": "windfarm", "deviceId": "edge-1", "modelName": "anomaly",
        "modelVersion": "1.0", "sampled": False}
    entry = record["deviceFleetInputs"][0]
    assert entry["name"] == "input" and entry["mode"] == "Input"
    assert entry["encoding"] == "BASE64"
    # The regex existing analysis code uses (shared/spec/agent-api.md).
    match = re.fullmatch(r"Tensor\[(\w+); ([\d, ]+)\]", entry["observedContentType"])
    assert match is not None and match.groups() == ("FLOAT32", "1, 6")
    assert record["deviceFleetOutputs"][0]["mode"] == "Output"
    assert record["deviceFleetAuxiliaryInputs"][0]["observedContentType"] == "application/json"
    assert record["deviceFleetAuxiliaryOutputs"][0]["mode"] == "Output"


def test_embedded_round_trip_gives_the_same_request_and_arrays(make_capture: MakeCapture) -> None:
    requests = [make_capture("c-1"), make_capture("c-2", sampled=True)]
    files = encode_batch(requests, key=KEY, device=DEVICE, embed_limit=3072, data_ref=str)
    records = list(decode_batch(files[-1].data, load=lambda ref: pytest.fail(ref)))
    assert [r.request for r in records] == requests
    assert all(r.device == DEVICE for r in records)
    np.testing.assert_array_equal(records[0].input_arrays["input"],
                                  np.arange(6, dtype=np.float32).reshape(1, 6))
    assert records[1].request.sampled


def test_payload_over_the_limit_goes_to_a_raw_file_beside_the_batch(tmp_path: Path) -> None:
    big = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    request = CaptureRequest("big", "anomaly", "1.0", INFERENCE_TIME_NS,
                             input_tensors=(captured_tensor("image", big),),
                             output_tensors=(captured_tensor("class", np.array([3], np.int64)),))
    sink = DiskSink(tmp_path)
    files = encode_batch([request], key=KEY, device=DEVICE, embed_limit=16,
                         data_ref=sink.data_ref)
    assert [f.key.rsplit("/", 1)[1] for f in files] == [
        "edge-1-abc-0000000000.0.input.0.bin", "edge-1-abc-0000000000.jsonl"]
    entry = json.loads(files[-1].data)["deviceFleetInputs"][0]
    assert entry["encoding"] == "NONE" and "data" not in entry
    assert entry["data-ref"] == "edge-1-abc-0000000000.0.input.0.bin"
    assert json.loads(files[-1].data)["deviceFleetOutputs"][0]["encoding"] == "BASE64"
    sink.write(files)
    [record] = read_batch_file(tmp_path / KEY)
    assert record.request == request
    np.testing.assert_array_equal(record.input_arrays["image"], big)


def test_limit_is_inclusive() -> None:
    request = CaptureRequest("c", "m", "1", INFERENCE_TIME_NS,
                             input_tensors=(captured_tensor("x", np.zeros(4, np.uint8)),))
    for limit, encoding in ((4, "BASE64"), (3, "NONE")):
        files = encode_batch([request], key=KEY, device=DEVICE, embed_limit=limit, data_ref=str)
        assert json.loads(files[-1].data)["deviceFleetInputs"][0]["encoding"] == encoding


def test_encoding_is_deterministic(make_capture: MakeCapture) -> None:
    requests = [make_capture(f"c-{i}", size=1000) for i in range(3)]
    first = encode_batch(requests, key=KEY, device=DEVICE, embed_limit=100, data_ref=str)
    again = encode_batch(requests, key=KEY, device=DEVICE, embed_limit=100, data_ref=str)
    assert first == again


def test_inference_time_format() -> None:
    assert format_inference_time(0) == "1970-01-01T00:00:00.000000Z"
    assert format_inference_time(INFERENCE_TIME_NS + 999) == "2026-11-23T19:12:31.123456Z"
    assert parse_inference_time("2026-11-23T19:12:31.123456Z") == INFERENCE_TIME_NS
    with pytest.raises(InvalidArgument, match="YYYY-MM-DD"):
        parse_inference_time("2026-11-23 19:12:31")


def test_decoder_names_the_bad_line(make_capture: MakeCapture) -> None:
    good = encode_batch([make_capture("c")], key=KEY, device=DEVICE, embed_limit=3072,
                        data_ref=str)[-1].data
    with pytest.raises(InvalidArgument, match="line 2"):
        list(decode_batch(good + b'{"eventVersion": "0"}\n', load=bytes.fromhex))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), embed_limit=st.integers(0, 3072))
def test_round_trip_property(data: st.DataObject, embed_limit: int) -> None:
    """Any dtype, shape, payload size and embed limit decodes to the same capture."""
    def tensors(role: str) -> tuple[CapturedTensor, ...]:
        count = data.draw(st.integers(0, 3), label=f"{role} count")
        result = []
        for position in range(count):
            data_type = data.draw(st.integers(0, len(DATA_TYPES) - 1))
            shape = tuple(data.draw(st.lists(st.integers(0, 40), max_size=3)))
            size = int(np.prod(shape, dtype=np.int64)) * DATA_TYPES[data_type][1].itemsize
            payload = data.draw(st.binary(min_size=size, max_size=size))
            result.append(CapturedTensor(f"{role}{position}", data_type, shape, payload))
        return tuple(result)

    auxiliary = tuple(
        CapturedAuxiliary(f"aux{i}", encoding, payload) for i, (encoding, payload) in
        enumerate(data.draw(st.lists(st.tuples(st.sampled_from(AuxiliaryEncoding),
                                               st.binary(max_size=4000)), max_size=2))))
    request = CaptureRequest(
        capture_id=data.draw(st.text(min_size=1, max_size=256)), model_alias="m-1",
        model_version=data.draw(st.text(max_size=10)),
        inference_time_ns=data.draw(st.integers(0, 4_102_444_800 * 10**6)) * 1000,
        input_tensors=tensors("in"), output_tensors=tensors("out"),
        auxiliary_inputs=auxiliary, auxiliary_outputs=auxiliary[::-1],
        sampled=data.draw(st.booleans()))
    files = encode_batch([request], key=KEY, device=DEVICE, embed_limit=embed_limit,
                         data_ref=lambda key: key.rsplit("/", 1)[1])
    raw = {f.key.rsplit("/", 1)[1]: f.data for f in files[:-1]}
    [record] = decode_batch(files[-1].data, load=raw.__getitem__)
    assert record.request == request


def test_lines_stay_ascii_when_names_hold_line_separators() -> None:
    # U+0085, U+2028 and U+2029 are line breaks for str.splitlines(); written raw they would cut
    # a record in two for readers that split that way.
    odd = CaptureRequest(
        capture_id="id\u2028with\u2029breaks", model_alias="anomaly", model_version="1.0",
        inference_time_ns=INFERENCE_TIME_NS,
        input_tensors=(captured_tensor("x\x85", np.arange(3, dtype=np.float32)),))
    plain = CaptureRequest(capture_id="plain", model_alias="anomaly", model_version="1.0",
                           inference_time_ns=INFERENCE_TIME_NS)
    (batch,) = encode_batch([odd, plain], key=KEY, device=DEVICE, embed_limit=3072,
                            data_ref=str)
    assert batch.data.isascii()
    assert len(batch.data.decode("ascii").splitlines()) == 2
    assert [r.request for r in decode_batch(batch.data, lambda ref: b"")] == [odd, plain]
