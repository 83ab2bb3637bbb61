"""SRTP and SRTCP with AES_CM_128_HMAC_SHA1_80 (RFC 3711) on `cryptography`.

One `SrtpContext` holds one master key and salt and keeps separate state for what it protects
(sending) and what it unprotects (receiving), per SSRC, so a session can echo the controller's
key in both directions (docs live-view.md §1.5). No key derivation rate (HomeKit never sets one),
no MKI.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import hmac
from struct import Struct
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MASTER_KEY_LENGTH: Final = 16
MASTER_SALT_LENGTH: Final = 14
AUTH_KEY_LENGTH: Final = 20  # HMAC-SHA1 key (RFC 3711 §4.2, n_a = 160)
AUTH_TAG_LENGTH: Final = 10  # 80-bit tag
RTP_HEADER_LENGTH: Final = 12
RTCP_HEADER_LENGTH: Final = 8  # the part SRTCP leaves in the clear (RFC 3711 §3.4)
SRTCP_INDEX_LENGTH: Final = 4
SRTCP_E_BIT: Final = 0x80000000
SRTCP_INDEX_MASK: Final = 0x7FFFFFFF
# RFC 3711 §4.3.1 labels; RTCP uses 3-5.
LABEL_RTP_CIPHER: Final = 0
LABEL_RTP_AUTH: Final = 1
LABEL_RTP_SALT: Final = 2
LABEL_RTCP_CIPHER: Final = 3
LABEL_RTCP_AUTH: Final = 4
LABEL_RTCP_SALT: Final = 5
# Received-index window (libsrtp's default width), and a cap on tracked remote SSRCs so a
# peer holding the key cannot grow our state without bound.
REPLAY_WINDOW: Final = 128
MAX_STREAMS: Final = 16

_SEQ_HALF: Final = 0x8000
_ROC_MODULUS: Final = 1 << 32
_U16: Final = Struct(">H")
_U32: Final = Struct(">I")


class SrtpError(Exception):
    """An SRTP or SRTCP packet is malformed, forged, replayed or too short."""


def derive_session_key(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """Return the session key for ``label`` (RFC 3711 §4.3.1 and §4.3.3, kdr = 0)."""
    # key_id = label || r with r = 0, so x = salt XOR (label << 48), and the PRF is AES-CM
    # keyed by the master key with the IV x * 2^16.
    x = int.from_bytes(master_salt) ^ (label << 48)
    return _aes_cm(master_key, (x << 16).to_bytes(16), bytes(length))


def aes_cm(session_key: bytes, session_salt: bytes, ssrc: int, index: int, data: bytes) -> bytes:
    """Return ``data`` XOR the AES-CM keystream of one packet (RFC 3711 §4.1.1)."""
    return _aes_cm(session_key, _iv(int.from_bytes(session_salt) << 16, ssrc, index), data)


def _iv(salt_shifted: int, ssrc: int, index: int) -> bytes:
    """Return IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)."""
    return (salt_shifted ^ (ssrc << 64) ^ (index << 16)).to_bytes(16)


def _aes_cm(key: bytes | algorithms.AES, iv: bytes, data: bytes | memoryview) -> bytes:
    """Run AES in counter mode; the low 16 bits of the IV are the block counter."""
    algorithm = key if isinstance(key, algorithms.AES) else algorithms.AES(key)
    encryptor = Cipher(algorithm, modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


@dataclass(slots=True)
class _ReplayWindow:
    """The highest authenticated index of a stream and a bitmask of the ones just below it."""

    highest: int
    mask: int = 1

    def check(self, index: int) -> None:
        """Raise SrtpError if ``index`` was already seen or is older than the window."""
        delta = self.highest - index
        if delta < 0:
            return
        if delta >= REPLAY_WINDOW:
            raise SrtpError(f"index {index} too old (highest {self.highest})")
        if self.mask >> delta & 1:
            raise SrtpError(f"index {index} replayed")

    def accept(self, index: int) -> None:
        """Record an authenticated ``index``."""
        delta = index - self.highest
        if delta > 0:
            self.mask = ((self.mask << delta) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self.highest = index
        else:
            self.mask |= 1 << -delta


@dataclass(slots=True)
class _RtpStream:
    """Rollover state of one RTP stream: ROC and highest sequence number s_l (RFC 3711 §3.3.1)."""

    roc: int
    last_seq: int
    window: _ReplayWindow | None = None

    def estimate(self, seq: int) -> int:
        """Return the ROC guess v for ``seq`` (RFC 3711 Appendix A)."""
        if self.last_seq < _SEQ_HALF:
            if seq - self.last_seq > _SEQ_HALF:
                return (self.roc - 1) % _ROC_MODULUS
        elif self.last_seq - _SEQ_HALF > seq:
            return (self.roc + 1) % _ROC_MODULUS
        return self.roc

    def advance(self, roc: int, seq: int) -> None:
        """Move s_l and the ROC forward when ``(roc, seq)`` is the newest packet yet."""
        if (roc << 16 | seq) > (self.roc << 16 | self.last_seq) or (
            roc == 0 and self.roc == _ROC_MODULUS - 1
        ):
            self.roc, self.last_seq = roc, seq


class _Keys:
    """The three session keys of one direction set (RTP or RTCP)."""

    __slots__ = ("cipher", "mac", "salt")

    def __init__(self, master_key: bytes, master_salt: bytes, first_label: int) -> None:
        """Derive the cipher, auth and salt keys starting at ``first_label``."""
        self.cipher = algorithms.AES(
            derive_session_key(master_key, master_salt, first_label, MASTER_KEY_LENGTH)
        )
        auth = derive_session_key(master_key, master_salt, first_label + 1, AUTH_KEY_LENGTH)
        self.mac = hmac.new(auth, digestmod=hashlib.sha1)
        salt = derive_session_key(master_key, master_salt, first_label + 2, MASTER_SALT_LENGTH)
        self.salt = int.from_bytes(salt) << 16

    def crypt(self, ssrc: int, index: int, data: bytes | memoryview) -> bytes:
        """Encrypt or decrypt one packet's payload."""
        return _aes_cm(self.cipher, _iv(self.salt, ssrc, index), data)

    def tag(self, *parts: bytes | memoryview) -> bytes:
        """Return the 80-bit HMAC-SHA1 tag over ``parts``."""
        mac = self.mac.copy()
        for part in parts:
            mac.update(part)
        return mac.digest()[:AUTH_TAG_LENGTH]


class SrtpContext:
    """Protect and unprotect SRTP/SRTCP packets of any SSRC with one master key."""

    __slots__ = ("_rtcp", "_rtcp_in", "_rtcp_out", "_rtp", "_rtp_in", "_rtp_out")

    def __init__(self, master_key: bytes, master_salt: bytes) -> None:
        """Derive the six session keys (RFC 3711 §4.3)."""
        if len(master_key) != MASTER_KEY_LENGTH or len(master_salt) != MASTER_SALT_LENGTH:
            raise ValueError("AES_CM_128_HMAC_SHA1_80 needs a 16-byte key and a 14-byte salt")
        self._rtp = _Keys(master_key, master_salt, LABEL_RTP_CIPHER)
        self._rtcp = _Keys(master_key, master_salt, LABEL_RTCP_CIPHER)
        self._rtp_out: dict[int, _RtpStream] = {}
        self._rtp_in: dict[int, _RtpStream] = {}
        self._rtcp_out: dict[int, int] = {}  # SSRC -> next SRTCP index
        self._rtcp_in: dict[int, _ReplayWindow] = {}

    def protect(self, rtp: bytes) -> bytes:
        """Encrypt and authenticate one RTP packet."""
        header_end = _rtp_header_end(rtp)
        seq = _U16.unpack_from(rtp, 2)[0]
        ssrc = _U32.unpack_from(rtp, 8)[0]
        stream = self._rtp_out.get(ssrc)
        if stream is None:
            stream = self._rtp_out[ssrc] = _RtpStream(0, seq)
        roc = stream.estimate(seq)
        stream.advance(roc, seq)
        view = memoryview(rtp)
        packet = bytes(view[:header_end]) + self._rtp.crypt(
            ssrc, roc << 16 | seq, view[header_end:]
        )
        return packet + self._rtp.tag(packet, _U32.pack(roc))

    def unprotect(self, srtp: bytes) -> bytes:
        """Authenticate and decrypt one SRTP packet; raise SrtpError if it is not genuine."""
        if len(srtp) < RTP_HEADER_LENGTH + AUTH_TAG_LENGTH:
            raise SrtpError(f"SRTP packet too short: {len(srtp)} bytes")
        view = memoryview(srtp)
        packet = view[:-AUTH_TAG_LENGTH]
        header_end = _rtp_header_end(packet)
        seq = _U16.unpack_from(srtp, 2)[0]
        ssrc = _U32.unpack_from(srtp, 8)[0]
        stream = self._rtp_in.get(ssrc)
        roc = stream.estimate(seq) if stream is not None else 0
        index = roc << 16 | seq
        if stream is not None and stream.window is not None:
            stream.window.check(index)
        if not hmac.compare_digest(self._rtp.tag(packet, _U32.pack(roc)), view[-AUTH_TAG_LENGTH:]):
            raise SrtpError("SRTP authentication failed")
        if stream is None:
            stream = self._rtp_in[ssrc] = _RtpStream(roc, seq, _ReplayWindow(index))
            _trim(self._rtp_in)
        elif stream.window is not None:
            stream.window.accept(index)
        stream.advance(roc, seq)
        return bytes(packet[:header_end]) + self._rtp.crypt(ssrc, index, packet[header_end:])

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """Encrypt and authenticate one (compound) RTCP packet with the next SRTCP index."""
        _check_rtcp_header(rtcp, len(rtcp))
        ssrc = _U32.unpack_from(rtcp, 4)[0]
        index = self._rtcp_out.get(ssrc, 0)
        self._rtcp_out[ssrc] = (index + 1) & SRTCP_INDEX_MASK
        view = memoryview(rtcp)
        packet = (
            bytes(view[:RTCP_HEADER_LENGTH])
            + self._rtcp.crypt(ssrc, index, view[RTCP_HEADER_LENGTH:])
            + _U32.pack(SRTCP_E_BIT | index)
        )
        return packet + self._rtcp.tag(packet)

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        """Authenticate and decrypt one SRTCP packet; raise SrtpError if it is not genuine."""
        end = len(srtcp) - AUTH_TAG_LENGTH - SRTCP_INDEX_LENGTH
        if end < RTCP_HEADER_LENGTH:
            raise SrtpError(f"SRTCP packet too short: {len(srtcp)} bytes")
        _check_rtcp_header(srtcp, end)
        view = memoryview(srtcp)
        if not hmac.compare_digest(
            self._rtcp.tag(view[:-AUTH_TAG_LENGTH]), view[-AUTH_TAG_LENGTH:]
        ):
            raise SrtpError("SRTCP authentication failed")
        ssrc = _U32.unpack_from(srtcp, 4)[0]
        e_index = _U32.unpack_from(srtcp, end)[0]
        index = e_index & SRTCP_INDEX_MASK
        window = self._rtcp_in.get(ssrc)
        if window is None:
            self._rtcp_in[ssrc] = _ReplayWindow(index)
            _trim(self._rtcp_in)
        else:
            window.check(index)
            window.accept(index)
        body = view[RTCP_HEADER_LENGTH:end]
        if e_index & SRTCP_E_BIT:
            return bytes(view[:RTCP_HEADER_LENGTH]) + self._rtcp.crypt(ssrc, index, body)
        return bytes(view[:end])


def _rtp_header_end(packet: bytes | memoryview) -> int:
    """Return where the payload of an RTP packet starts (after CSRCs and the extension)."""
    length = len(packet)
    if length < RTP_HEADER_LENGTH:
        raise SrtpError(f"RTP packet too short: {length} bytes")
    first = packet[0]
    if first >> 6 != 2:
        raise SrtpError(f"not RTP version 2: {first >> 6}")
    end = RTP_HEADER_LENGTH + 4 * (first & 0x0F)
    if first & 0x10:
        if end + 4 > length:
            raise SrtpError("RTP header extension truncated")
        end += 4 + 4 * _U16.unpack_from(packet, end + 2)[0]
    if end > length:
        raise SrtpError("RTP header longer than the packet")
    return end


def _check_rtcp_header(packet: bytes, length: int) -> None:
    """Raise SrtpError unless ``packet[:length]`` starts like an RTCP packet."""
    if length < RTCP_HEADER_LENGTH:
        raise SrtpError(f"RTCP packet too short: {length} bytes")
    if packet[0] >> 6 != 2:
        raise SrtpError(f"not RTCP version 2: {packet[0] >> 6}")


def _trim(streams: dict[int, _RtpStream] | dict[int, _ReplayWindow]) -> None:
    """Forget the oldest remote stream once more than MAX_STREAMS are tracked."""
    while len(streams) > MAX_STREAMS:
        del streams[next(iter(streams))]
