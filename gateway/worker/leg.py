"""What a call handle commands: the signalling and media side of one call leg.

`Call` (worker/call.py) holds everything a call's logic needs and is the same for every caller;
what differs is the leg under it. A SIP leg runs each command on the pj thread; a WebRTC leg
(gateway/webrtc/leg.py) carries them out on its aiortc peer connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.dialplan.transfers import TransferPolicy
from gateway.sip.calls import GatewayCall
from gateway.sip.endpoint import SipEndpoint


class Leg(Protocol):
    transport: str  # the metrics label and the record's: "sip" or "webrtc"

    async def respond(self, code: int) -> None: ...
    async def reject(self, code: int, reason: str) -> None: ...
    async def end(self) -> None: ...
    async def listen(self, sink: Callable[[bytes], None]) -> None: ...
    async def set_transfer_policy(self, policy: TransferPolicy) -> None: ...
    async def send_digits(self, digits: str) -> str: ...
    async def transfer(self, uri: str) -> None: ...


class SipLeg:
    """A SIP call's commands, each a callable run on the pj thread for the call's key."""

    transport = "sip"

    def __init__(self, endpoint: SipEndpoint, key: int) -> None:
        self.endpoint = endpoint
        self.key = key

    async def respond(self, code: int) -> None:
        await self.endpoint.call_command(self.key, GatewayCall.respond, code)

    async def reject(self, code: int, reason: str) -> None:
        await self.endpoint.call_command(self.key, GatewayCall.reject, code, reason)

    async def end(self) -> None:
        await self.endpoint.call_command(self.key, GatewayCall.end)

    async def listen(self, sink: Callable[[bytes], None]) -> None:
        await self.endpoint.call_command(self.key, GatewayCall.listen, sink)

    async def set_transfer_policy(self, policy: TransferPolicy) -> None:
        await self.endpoint.call_command(self.key, GatewayCall.set_transfer_policy, policy)

    async def send_digits(self, digits: str) -> str:
        return await self.endpoint.call_command(self.key, GatewayCall.send_digits, digits)

    async def transfer(self, uri: str) -> None:
        await self.endpoint.call_command(self.key, GatewayCall.transfer, uri)
