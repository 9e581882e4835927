"""Malformed input to the Cloud Map API: always a modeled 4xx error, never a 5xx or a hang.

Invariant: for any body, any operation name and either protocol, the server answers with a
status below 500 and an error body whose ``__type`` names what was wrong.
"""

from __future__ import annotations

import json
from typing import Any

import cbor2
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapmesh.api.spec import load_spec
from tests.support import ServerProcess

OPERATIONS = sorted(load_spec("servicediscovery-2017-03-14").operations)
TARGET = "Route53AutoNaming_v20170314"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# Bodies shaped like real requests: the operation's member names with arbitrary values.
member_names = st.sampled_from(
    ["Name", "Id", "ServiceId", "InstanceId", "Attributes", "NamespaceName", "ServiceName",
     "MaxResults", "NextToken", "Filters", "DnsConfig", "HealthStatus", "Tags", "ResourceARN"]
)  # fmt: skip
shaped_bodies = st.dictionaries(member_names, json_values, max_size=5)

fuzz_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Any:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def assert_client_error(response: httpx.Response, decode: Any) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert decode(response.content)["__type"]


@fuzz_settings
@given(operation=st.sampled_from(OPERATIONS), body=shaped_bodies | json_values)
def test_json11_bodies(http: httpx.Client, operation: str, body: Any) -> None:
    response = http.post(
        "/",
        headers={"X-Amz-Target": f"{TARGET}.{operation}",
                 "Content-Type": "application/x-amz-json-1.1"},
        content=json.dumps(body),
    )  # fmt: skip
    assert_client_error(response, json.loads)


@fuzz_settings
@given(operation=st.sampled_from(OPERATIONS), body=shaped_bodies | json_values)
def test_cbor_bodies(http: httpx.Client, operation: str, body: Any) -> None:
    response = http.post(
        f"/service/{TARGET}/operation/{operation}",
        headers={"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"},
        content=cbor2.dumps(body),
    )
    assert_client_error(response, cbor2.loads)


@fuzz_settings
@given(operation=st.sampled_from(OPERATIONS), raw=st.binary(max_size=200))
def test_raw_bytes(http: httpx.Client, operation: str, raw: bytes) -> None:
    for path, headers, decode in (
        ("/", {"X-Amz-Target": f"{TARGET}.{operation}"}, json.loads),
        (f"/service/{TARGET}/operation/{operation}", {"smithy-protocol": "rpc-v2-cbor"},
         cbor2.loads),
    ):  # fmt: skip
        assert_client_error(http.post(path, headers=headers, content=raw), decode)
