"""Pair-setup SRP: fixed-width numbers agree with a real controller's SRP every time."""

from __future__ import annotations

import hashlib

from aiohomekit.crypto.srp import SrpClient
from pyhap.hsrp import Server
from pyhap.params import get_srp_context

from custom_components.hksv.hap.request_guard import HksvHandler
from custom_components.hksv.hap.srp import FixedWidthSrpServer, fixed_width

CODE = "031-45-154"


def test_unlucky_sessions_pair() -> None:
    """Sessions whose S or K start with a zero byte verify with ours and fail with stock pyhap."""
    unlucky = 0
    for _ in range(5000):
        server = FixedWidthSrpServer(CODE.encode())
        client = SrpClient("Pair-Setup", CODE)
        client.set_salt(int.from_bytes(server.s, "big"))
        client.set_server_public_key(server.Bb)
        server.set_A(client.get_public_key_bytes())
        if server.Sb[0] and server.Kb[0]:
            continue
        unlucky += 1
        proof = client.get_proof_bytes()
        assert server.verify(proof) == server.HAMK
        assert client.verify_servers_proof_bytes(server.HAMK)
        assert fixed_width(server.get_session_key()) == client.get_session_key_bytes()

        stock = Server(
            get_srp_context(3072, hashlib.sha512, 16), b"Pair-Setup", CODE.encode(),
            s=server.s, b=server.b,
        )  # fmt: skip
        stock.set_A(client.get_public_key_bytes())
        assert stock.verify(proof) is None
        if unlucky == 2:
            break
    assert unlucky == 2


def test_fixed_width() -> None:
    """B is sent as 384 bytes and K as 64, whatever their leading bytes."""
    assert fixed_width(1) == bytes(63) + b"\x01"
    assert len(fixed_width(1 << 600)) == 384
    assert fixed_width((1 << 511) + 5)[0] == 0x80


def test_handler_uses_fixed_width_numbers() -> None:
    """The pair-setup steps that turn B and K into bytes use the fixed-width conversion."""
    for step in ("_pairing_one", "_pairing_three", "_pairing_four", "_pairing_five"):
        assert getattr(HksvHandler, step).__globals__["long_to_bytes"] is fixed_width
