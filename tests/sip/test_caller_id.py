"""Caller ID as carriers assert it: P-Asserted-Identity and Remote-Party-ID over From, and
Privacy withholding it, through the real gateway (the caller number lands in the call record)."""

from __future__ import annotations

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.phones import call

MENU = "+15550101"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with GatewayProcess(tmp_path_factory.mktemp("cid")) as gw:
        yield gw


@pytest.mark.parametrize("headers, expected", [
    ([], "softphone"),
    (["P-Asserted-Identity: \"Bob\" <sip:+4930123456@127.0.0.1>, <tel:+4930123456>"], "+4930123456"),
    (["Remote-Party-ID: <sip:+12125550100@127.0.0.1>;party=calling;privacy=off"], "+12125550100"),
    (["P-Asserted-Identity: <sip:+4930123456@127.0.0.1>", "Privacy: id"], "anonymous"),
    (["Remote-Party-ID: <sip:+12125550100@127.0.0.1>;party=calling;privacy=full"], "anonymous"),
    (["P-Asserted-Identity: <sip:+49%0D%0A30@127.0.0.1>"], "+4930"),
])
def test_caller_number_from_the_carriers_assertion(gateway, headers, expected) -> None:
    before = len(gateway.records_list())
    args = [a for h in headers for a in ("--extra-header", h)]
    done = call(gateway.target, MENU, *args, "--hangup-after", "1")["calls"][0]
    assert done["status"] == 200, done
    records = gateway.wait_records(before + 1)
    assert records[-1]["caller"] == expected, records[-1]
