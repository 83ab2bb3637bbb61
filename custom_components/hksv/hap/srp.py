"""Pair-setup SRP with fixed-width numbers, fixing HAP-python's occasional pairing failures.

HAP-python 5.0.0 turns B, the premaster secret S and the session key K into bytes without
their leading zero bytes, while controllers (aiohomekit, Apple's ADK) use the fixed widths of
SRP-6a with the 3072-bit group: 384 bytes for A, B and S, 64 for K. Whenever one of them starts
with a zero byte (about 3 pairings in 256) the proofs or the derived keys disagree and pairing
fails as if the setup code were wrong. This module keeps HAP-python's pairing flow and only
makes its numbers fixed-width, per driver (HA's own homekit integration is not touched).
"""

from __future__ import annotations

from collections.abc import Callable
import hashlib
import types
from typing import Any, Final

from pyhap.hsrp import Server, bytes_to_long
from pyhap.params import get_srp_context

GROUP_BITS: Final = 3072
N_BYTES: Final = GROUP_BITS // 8  # A, B and S
K_BYTES: Final = hashlib.sha512().digest_size  # the session key


def fixed_width(number: int) -> bytes:
    """Return an SRP number big-endian at its protocol width (B: 384 bytes, K: 64 bytes)."""
    raw = number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")
    # Only B (3072-bit) and K (512-bit) pass through here; a B below 2^512 has odds of 2^-2560.
    return raw.rjust(N_BYTES if len(raw) > K_BYTES else K_BYTES, b"\x00")


class FixedWidthSrpServer(Server):
    """HAP-python's SRP server with every number padded as the controller pads it."""

    def __init__(self, setup_code: bytes) -> None:
        """Start a pair-setup session for ``setup_code``."""
        super().__init__(get_srp_context(GROUP_BITS, hashlib.sha512, 16), b"Pair-Setup", setup_code)
        self.Bb = self.B.to_bytes(N_BYTES, "big")

    def set_A(self, bytes_A: bytes) -> None:
        """Take the controller's public key and derive S, K, the proof M and HAMK."""
        self.Ab = bytes(bytes_A).rjust(N_BYTES, b"\x00")
        self.A = bytes_to_long(self.Ab)
        self.S = self._derive_premaster_secret()
        self.Sb = self.S.to_bytes(N_BYTES, "big")
        self.K = self._get_K()
        self.Kb = self.K.to_bytes(K_BYTES, "big")
        self.M = self._get_M()
        self.HAMK = self._get_HAMK()


def with_fixed_width_numbers(function: Callable[..., Any]) -> Callable[..., Any]:
    """Return a copy of a HAP-python handler method whose ``long_to_bytes`` pads to width."""
    namespace = dict(function.__globals__, long_to_bytes=fixed_width)
    copy = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
    )
    copy.__doc__ = function.__doc__
    return copy
