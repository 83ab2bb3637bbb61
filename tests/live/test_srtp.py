"""SRTP/SRTCP: RFC 3711 Appendix B vectors, libsrtp (pylibsrtp) both ways, replay, fuzzing."""

from __future__ import annotations

from contextlib import suppress
import os
from pathlib import Path
import struct

from hypothesis import given, settings, strategies as st
from pylibsrtp import Policy, Session
import pytest

from custom_components.hksv.live.srtp import (
    AUTH_TAG_LENGTH,
    LABEL_RTP_AUTH,
    LABEL_RTP_CIPHER,
    LABEL_RTP_SALT,
    REPLAY_WINDOW,
    SrtpContext,
    SrtpError,
    aes_cm,
    derive_session_key,
)

# RFC 3711 Appendix B.3.
B3_MASTER_KEY = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
B3_MASTER_SALT = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")
# RFC 3711 Appendix B.2: counter block -> keystream block.
B2_SESSION_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
B2_SESSION_SALT = bytes.fromhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD")
B2_KEYSTREAM = {
    0x0000: "E03EAD0935C95E80E166B16DD92B4EB4",
    0x0001: "D23513162B02D0F72A43A2FE4A5F97AB",
    0x0002: "41E95B3BB0A2E8DD477901E4FCA894C0",
    0xFEFF: "EC8CDF7398607CB0F2D21675EA9EA1E4",
    0xFF00: "362B7C3C6773516318A077D7FC5073AE",
    0xFF01: "6A2CC3787889374FBEB4C81B17BA6C44",
}

KEY = bytes(range(16))
SALT = bytes(range(100, 114))
SSRC = 0x1234ABCD


def rtp(seq: int, payload: bytes = b"", *, ssrc: int = SSRC, ts: int = 0, pt: int = 99) -> bytes:
    """Return a plain RTP packet."""
    body = payload or struct.pack(">I", seq) * 25
    return struct.pack(">BBHII", 0x80, pt, seq & 0xFFFF, ts, ssrc) + body


def rtcp_rr(ssrc: int = SSRC, extra: bytes = b"") -> bytes:
    """Return an empty receiver report (plus ``extra`` RTCP packets)."""
    return struct.pack(">BBHI", 0x80, 201, 1, ssrc) + extra


def libsrtp(direction: int) -> Session:
    """Return a libsrtp session with KEY/SALT for any SSRC in ``direction``."""
    policy = Policy(
        key=KEY + SALT, ssrc_type=direction, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    )
    return Session(policy=policy)


@pytest.mark.parametrize(
    ("label", "length", "expected"),
    [
        (LABEL_RTP_CIPHER, 16, "C61E7A93744F39EE10734AFE3FF7A087"),
        (LABEL_RTP_AUTH, 20, "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"),
        (LABEL_RTP_SALT, 14, "30CBBC08863D8C85D49DB34A9AE1"),
    ],
    ids=["cipher", "auth", "salt"],
)
def test_key_derivation_vectors(label: int, length: int, expected: str) -> None:
    """Session keys match RFC 3711 B.3."""
    assert (
        derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, label, length).hex().upper() == expected
    )


def test_aes_cm_keystream_vectors() -> None:
    """The keystream for SSRC 0, index 0 matches RFC 3711 B.2, across the 16-bit counter."""
    keystream = aes_cm(B2_SESSION_KEY, B2_SESSION_SALT, 0, 0, bytes(16 * 0xFF02))
    for block, expected in B2_KEYSTREAM.items():
        assert keystream[16 * block : 16 * (block + 1)].hex().upper() == expected


def test_rejects_wrong_key_sizes() -> None:
    """Only AES-128 keys with a 112-bit salt are accepted."""
    with pytest.raises(ValueError, match="16-byte key"):
        SrtpContext(KEY + KEY, SALT)
    with pytest.raises(ValueError, match="14-byte salt"):
        SrtpContext(KEY, SALT[:12])


@pytest.mark.parametrize("first_seq", [0, 65_000, 65_535], ids=["start", "wrap", "last"])
def test_protect_decrypts_with_libsrtp_across_rollover(first_seq: int) -> None:
    """libsrtp reads our SRTP, including after the sequence number wraps (ROC 0 -> 1)."""
    ours = SrtpContext(KEY, SALT)
    theirs = libsrtp(Policy.SSRC_ANY_INBOUND)
    for seq in range(first_seq, first_seq + 1200):
        packet = rtp(seq, ts=seq * 3000 & 0xFFFFFFFF)
        protected = ours.protect(packet)
        assert len(protected) == len(packet) + AUTH_TAG_LENGTH
        assert protected[12:-10] != packet[12:]
        # libsrtp tracks the rollover counter itself: past a wrap, its authentication check
        # passes only if ours counted the wrap too (RFC 3711 §3.3.1, §4.2).
        assert theirs.unprotect(protected) == packet


def test_unprotect_reads_libsrtp_across_rollover() -> None:
    """We read libsrtp's SRTP across a wrap, with reordering inside the replay window."""
    ours = SrtpContext(KEY, SALT)
    theirs = libsrtp(Policy.SSRC_ANY_OUTBOUND)
    protected = [theirs.protect(rtp(seq)) for seq in range(65_400, 65_400 + 400)]
    # Swap neighbours: packets arrive out of order around the wrap.
    order = list(range(len(protected)))
    for i in range(1, len(order) - 1, 7):
        order[i], order[i + 1] = order[i + 1], order[i]
    for i in order:
        assert ours.unprotect(protected[i]) == rtp(65_400 + i)


def test_header_extension_and_csrcs_stay_clear() -> None:
    """Encryption starts after the CSRC list and the header extension, as libsrtp's does."""
    header = struct.pack(">BBHII", 0x92, 99, 7, 1, SSRC) + struct.pack(">II", 1, 2)
    header += struct.pack(">HH", 0xBEDE, 1) + b"\x10\xaa\x00\x00"
    packet = header + b"payload" * 20
    protected = SrtpContext(KEY, SALT).protect(packet)
    assert protected.startswith(header)
    assert libsrtp(Policy.SSRC_ANY_INBOUND).unprotect(protected) == packet
    assert SrtpContext(KEY, SALT).unprotect(libsrtp(Policy.SSRC_ANY_OUTBOUND).protect(packet)) == (
        packet
    )


def test_srtcp_both_ways() -> None:
    """SRTCP: libsrtp reads ours, we read libsrtp's, and the index advances with E set."""
    ours_out, ours_in = SrtpContext(KEY, SALT), SrtpContext(KEY, SALT)
    theirs_in = libsrtp(Policy.SSRC_ANY_INBOUND)
    theirs_out = libsrtp(Policy.SSRC_ANY_OUTBOUND)
    sdes = bytes.fromhex("81ca0003") + struct.pack(">I", SSRC) + b"\x01\x02ab\x00\x00"
    for n in range(300):
        packet = rtcp_rr(extra=sdes)
        protected = ours_out.protect_rtcp(packet)
        e_index = struct.unpack(">I", protected[-14:-10])[0]
        assert e_index == 0x80000000 | n
        assert protected[8:-14] != packet[8:]
        assert theirs_in.unprotect_rtcp(protected) == packet
        assert ours_in.unprotect_rtcp(theirs_out.protect_rtcp(packet)) == packet


def test_unencrypted_srtcp_is_authenticated_and_returned() -> None:
    """With E = 0 the body is in the clear but still authenticated."""
    ours = SrtpContext(KEY, SALT)
    packet = rtcp_rr(extra=b"\x81\xcb\x00\x01" + struct.pack(">I", SSRC))
    # Build E=0 SRTCP with our own keys: the tag covers packet || index.
    from custom_components.hksv.live import srtp

    keys = srtp._Keys(KEY, SALT, srtp.LABEL_RTCP_CIPHER)
    body = packet + struct.pack(">I", 5)
    assert ours.unprotect_rtcp(body + keys.tag(body)) == packet


@pytest.mark.parametrize("kind", ["rtp", "rtcp"])
def test_replay_and_forgery_rejected(kind: str) -> None:
    """A replayed, tampered or too-old packet raises SrtpError and leaves the state usable."""
    sender, receiver = SrtpContext(KEY, SALT), SrtpContext(KEY, SALT)
    protect = sender.protect if kind == "rtp" else sender.protect_rtcp
    unprotect = receiver.unprotect if kind == "rtp" else receiver.unprotect_rtcp
    make = rtp if kind == "rtp" else (lambda n: rtcp_rr(extra=bytes(4 * (n % 5))))
    packets = [protect(make(n)) for n in range(REPLAY_WINDOW + 10)]
    assert unprotect(packets[0]) == make(0)
    with pytest.raises(SrtpError, match="replayed"):
        unprotect(packets[0])
    tampered = bytearray(packets[1])
    tampered[-12] ^= 1
    with pytest.raises(SrtpError, match="authentication"):
        unprotect(bytes(tampered))
    assert unprotect(packets[-1]) == make(len(packets) - 1)
    with pytest.raises(SrtpError, match="too old"):
        unprotect(packets[1])
    assert unprotect(packets[-5]) == make(len(packets) - 5)


def test_wrong_key_rejected() -> None:
    """A packet under another key fails authentication."""
    protected = SrtpContext(os.urandom(16), SALT).protect(rtp(1))
    with pytest.raises(SrtpError, match="authentication"):
        SrtpContext(KEY, SALT).unprotect(protected)


MALFORMED_RTP = [
    b"",
    b"\x80" * 11,
    b"\x00" * 40,
    bytes([0x8F]) + bytes(30),
    bytes([0x90]) + bytes(13) + b"\x00\x05" + bytes(8),
]


@pytest.mark.parametrize(
    "packet",
    MALFORMED_RTP,
    ids=["empty", "short", "version0", "csrc-overrun", "extension-overrun"],
)
def test_malformed_rtp(packet: bytes) -> None:
    """Malformed RTP raises SrtpError whether protected or unprotected."""
    with pytest.raises(SrtpError):
        SrtpContext(KEY, SALT).unprotect(packet)
    with pytest.raises(SrtpError):
        SrtpContext(KEY, SALT).protect(packet)


@pytest.mark.parametrize(
    "packet", [b"", b"\x80\xc9\x00", b"\x00" * 8], ids=["empty", "short", "v0"]
)
def test_malformed_rtcp(packet: bytes) -> None:
    """Malformed RTCP raises SrtpError whether protected or unprotected."""
    with pytest.raises(SrtpError):
        SrtpContext(KEY, SALT).protect_rtcp(packet)
    with pytest.raises(SrtpError):
        SrtpContext(KEY, SALT).unprotect_rtcp(packet + bytes(14))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_srtp_error(data: bytes) -> None:
    """Random input into every unprotect raises SrtpError and nothing else."""
    context = SrtpContext(KEY, SALT)
    for unprotect in (context.unprotect, context.unprotect_rtcp):
        with suppress(SrtpError):
            unprotect(data)
            pytest.fail("random bytes authenticated")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 300), st.data())
def test_mutated_packets_raise_only_srtp_error(seq: int, size: int, data: st.DataObject) -> None:
    """Flipping, cutting or extending a genuine packet is always caught as SrtpError."""
    sender = SrtpContext(KEY, SALT)
    genuine = sender.protect(rtp(seq, bytes(size) + b"x"))
    genuine_rtcp = sender.protect_rtcp(rtcp_rr(extra=bytes(size & ~3)))
    for packet, unprotect in (
        (genuine, SrtpContext(KEY, SALT).unprotect),
        (genuine_rtcp, SrtpContext(KEY, SALT).unprotect_rtcp),
    ):
        mutated = bytearray(packet)
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] ^= data.draw(st.integers(1, 255))
        cut = data.draw(st.integers(0, len(packet) - 1))
        for candidate in (bytes(mutated), packet[:cut], packet + b"\x00"):
            with pytest.raises(SrtpError):
                unprotect(candidate)


def test_media_modules_load_without_home_assistant() -> None:
    """live/{srtp,h264_rtp,rtcp,audio,transcode} import no Home Assistant, even indirectly."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    script = f"""
import sys, types
for name, path in (("custom_components", "custom_components"),
                   ("custom_components.hksv", "custom_components/hksv")):
    module = types.ModuleType(name)
    module.__path__ = [{str(root)!r} + "/" + path]
    sys.modules[name] = module
for name in ("srtp", "h264_rtp", "rtcp", "audio", "transcode"):
    __import__("custom_components.hksv.live." + name)
print(sorted(n for n in sys.modules if n.split(".")[0] == "homeassistant"))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
