"""JSON-RPC 2.0 envelopes, batches, notifications and error codes (the specification's sections
4 to 6 and its examples), over a table of toy methods."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.bridge.protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Dispatcher,
    InvalidParams,
    JsonRpcError,
    Request,
    dump,
    named_params,
)

calls: list[Request] = []


def subtract(request: Request) -> Any:
    calls.append(request)
    params = request.params
    if isinstance(params, list):
        return params[0] - params[1]
    assert isinstance(params, dict)
    if not isinstance(params.get("minuend"), int):
        raise InvalidParams("minuend", "must be an integer")
    return params["minuend"] - params["subtrahend"]


def record(request: Request) -> None:
    calls.append(request)


def broken(request: Request) -> None:
    raise RuntimeError("secret internals")


def storage_down(request: Request) -> None:
    raise JsonRpcError(-32001, "Storage error: s3:///x: unreachable", {"url": "s3:///x"})


DISPATCHER = Dispatcher({"subtract": subtract, "update": record, "broken": broken,
                         "down": storage_down})


@pytest.fixture(autouse=True)
def _no_calls() -> None:
    calls.clear()


def rpc(body: Any) -> Any:
    """Answer ``body`` (text, or a value sent as JSON) and return the decoded response."""
    text = body if isinstance(body, str | bytes) else json.dumps(body)
    answer = DISPATCHER.handle(text)
    return None if answer is None else json.loads(dump(answer))


def code(answer: dict[str, Any]) -> int:
    return int(answer["error"]["code"])


def test_call_with_named_and_positional_params() -> None:
    assert rpc({"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}) == {
        "jsonrpc": "2.0", "result": 19, "id": 1}
    assert rpc({"jsonrpc": "2.0", "method": "subtract", "id": "a",
                "params": {"subtrahend": 23, "minuend": 42}}) == {
        "jsonrpc": "2.0", "result": 19, "id": "a"}


def test_null_id_is_answered_and_echoed() -> None:
    assert rpc({"jsonrpc": "2.0", "method": "subtract", "params": [1, 1], "id": None})[
        "id"] is None


def test_notification_is_called_but_never_answered() -> None:
    assert rpc({"jsonrpc": "2.0", "method": "update", "params": [1, 2]}) is None
    assert [c.notification for c in calls] == [True]
    # Not even errors: an unknown method, a failing method, bad params.
    assert rpc({"jsonrpc": "2.0", "method": "foobar"}) is None
    assert rpc({"jsonrpc": "2.0", "method": "broken"}) is None
    assert rpc({"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": "x"}}) is None


def test_method_not_found_names_the_methods() -> None:
    answer = rpc({"jsonrpc": "2.0", "method": "foobar", "id": "1"})
    assert code(answer) == METHOD_NOT_FOUND and answer["id"] == "1"
    assert answer["error"]["data"]["methods"] == ["broken", "down", "subtract", "update"]


@pytest.mark.parametrize("body", [
    '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
    "", "   ", "nul", "{", '{"a": NaN}', '{"a": Infinity}', b"\xff\xfe\x00garbage",
    "[" * 100_000 + "]" * 100_000,  # deeper than the decoder's recursion limit
    '{"jsonrpc": "2.0", "method": "update", "id": ' + "9" * 5000 + "}",  # beyond int limits
])
def test_parse_error(body: str | bytes) -> None:
    answer = rpc(body)
    assert code(answer) == PARSE_ERROR and answer["id"] is None
    assert answer["error"]["message"].startswith("Parse error")


@pytest.mark.parametrize(("message", "reason"), [
    ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, "`method`"),
    ({"jsonrpc": "1.0", "method": "update", "id": 1}, "`jsonrpc`"),
    ({"method": "update", "id": 1}, "`jsonrpc`"),
    ({"jsonrpc": "2.0", "id": 1}, "`method`"),
    ({"jsonrpc": "2.0", "method": "update", "params": "bar", "id": 1}, "`params`"),
    ({"jsonrpc": "2.0", "method": "update", "params": None, "id": 1}, "`params`"),
    ({"jsonrpc": "2.0", "method": "update", "id": True}, "`id`"),
    ({"jsonrpc": "2.0", "method": "update", "id": [1]}, "`id`"),
    ({"jsonrpc": "2.0", "method": "update", "id": {"a": 1}}, "`id`"),
    (1, "request object"), ('"x"', "request object"), (None, "request object"),
])
def test_invalid_request(message: Any, reason: str) -> None:
    answer = rpc(message)
    assert code(answer) == INVALID_REQUEST, answer
    assert reason in answer["error"]["data"]["reason"]
    assert calls == []


def test_invalid_request_keeps_a_valid_id_and_nulls_a_bad_one() -> None:
    assert rpc({"jsonrpc": "1.0", "method": "update", "id": 7})["id"] == 7
    assert rpc({"jsonrpc": "2.0", "method": "update", "id": False})["id"] is None


def test_huge_and_fractional_ids_are_echoed_exactly() -> None:
    huge = 10**300
    assert rpc(f'{{"jsonrpc": "2.0", "method": "update", "id": {huge}}}')["id"] == huge
    assert rpc({"jsonrpc": "2.0", "method": "update", "id": 1.5})["id"] == 1.5
    long_id = "i" * 100_000
    assert rpc({"jsonrpc": "2.0", "method": "update", "id": long_id})["id"] == long_id
    # 1e400 overflows a float: not a usable id, so the answer's id is null.
    assert code(rpc('{"jsonrpc": "2.0", "method": "update", "id": 1e400}')) == INVALID_REQUEST


def test_invalid_params_names_the_parameter() -> None:
    answer = rpc({"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": "x"}, "id": 3})
    assert code(answer) == INVALID_PARAMS
    assert answer["error"]["data"] == {"param": "minuend", "reason": "must be an integer"}
    assert "`minuend`" in answer["error"]["message"]


def test_unexpected_exception_is_internal_error_without_internals() -> None:
    answer = rpc({"jsonrpc": "2.0", "method": "broken", "id": 9})
    assert code(answer) == INTERNAL_ERROR and answer["id"] == 9
    assert "secret" not in json.dumps(answer)


def test_server_error_keeps_code_and_data() -> None:
    answer = rpc({"jsonrpc": "2.0", "method": "down", "id": 9})
    assert answer["error"] == {"code": -32001, "message": "Storage error: s3:///x: unreachable",
                               "data": {"url": "s3:///x"}}


def test_batch_mixed() -> None:
    # The specification's batch example, in its order; the notifications get no answer.
    answer = rpc([
        {"jsonrpc": "2.0", "method": "subtract", "params": [1, 2], "id": "1"},
        {"jsonrpc": "2.0", "method": "update", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
    ])
    assert [(a["id"], a.get("result"), a.get("error", {}).get("code")) for a in answer] == [
        ("1", -1, None), ("2", 19, None), (None, None, INVALID_REQUEST),
        ("5", None, METHOD_NOT_FOUND)]
    assert len(calls) == 3


def test_empty_batch_is_one_invalid_request() -> None:
    answer = rpc([])
    assert isinstance(answer, dict) and code(answer) == INVALID_REQUEST


def test_batch_of_non_requests_answers_each() -> None:
    answer = rpc([1, 2, 3])
    assert [code(a) for a in answer] == [INVALID_REQUEST] * 3


def test_batch_of_notifications_gives_nothing() -> None:
    assert rpc([{"jsonrpc": "2.0", "method": "update", "params": [1]},
                {"jsonrpc": "2.0", "method": "foobar"}]) is None
    assert len(calls) == 1


def test_invalid_batch_json_is_one_parse_error() -> None:
    answer = rpc('[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
                 '{"jsonrpc": "2.0", "method"]')
    assert isinstance(answer, dict) and code(answer) == PARSE_ERROR


def test_named_params() -> None:
    assert named_params(Request("m")) == {}
    assert named_params(Request("m", params=[])) == {}
    assert named_params(Request("m", params={"a": 1}), frozenset({"b"})) == {"a": 1}
    with pytest.raises(InvalidParams) as raised:
        named_params(Request("m", params=[1]))
    assert raised.value.param == "params"


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                 | st.text(max_size=10),
                 lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.sampled_from(["jsonrpc", "method", "params", "id", "x"]),
                                   inner, max_size=5),
                 max_leaves=20).map(json.dumps)))
def test_any_input_gets_a_well_formed_answer(body: str | bytes) -> None:
    answer = DISPATCHER.handle(body)
    if answer is None:
        return
    for one in answer if isinstance(answer, list) else [answer]:
        assert one["jsonrpc"] == "2.0" and "id" in one
        assert ("result" in one) != ("error" in one)
        if "error" in one:
            assert isinstance(one["error"]["code"], int)
            assert isinstance(one["error"]["message"], str)
    json.loads(dump(answer))
