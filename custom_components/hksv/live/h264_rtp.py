"""H.264 over RTP for HomeKit (RFC 6184 non-interleaved mode) from AVCC access units.

HomeKit's quirks (docs live-view.md §2.2, from Scrypted's packetizer): no padding, no SEI
anywhere, SPS+PPS as a STAP-A with a plain 0x18 header (NRI 0) before every IDR.
"""

from __future__ import annotations

from struct import Struct
from typing import Final

NAL_TYPE_MASK: Final = 0x1F
NAL_NRI_MASK: Final = 0x60
NAL_IDR: Final = 5
NAL_SEI: Final = 6
NAL_SPS: Final = 7
NAL_PPS: Final = 8
NAL_AUD: Final = 9
NAL_FILLER: Final = 12
NAL_STAP_A: Final = 24
NAL_FU_A: Final = 28
# Dropped: SEI ("SEI nal causes homekit to fail"), AUD and filler (useless on RTP), and the
# unspecified / aggregation types, which must never appear inside an AVCC sample.
_DROPPED: Final = frozenset({0, NAL_SEI, NAL_AUD, NAL_FILLER, *range(NAL_STAP_A, 32)})
STAP_A_HEADER: Final = NAL_STAP_A  # F=0, NRI=0: HomeKit rejects the RFC's max-NRI header
FU_START: Final = 0x80
FU_END: Final = 0x40

RTP_VERSION_BITS: Final = 0x80  # V=2, P=0, X=0, CC=0
RTP_HEADER_LENGTH: Final = 12
SRTP_TAG_LENGTH: Final = 10
UDP_HEADER_LENGTH: Final = 8
IPV4_HEADER_LENGTH: Final = 20
IPV6_HEADER_LENGTH: Final = 40
# HomeKit's defaults when the selection carries no MTU (HAP-NodeJS RTPStreamManagement).
DEFAULT_MTU_IPV4: Final = 1378
DEFAULT_MTU_IPV6: Final = 1228
MIN_MTU: Final = 256
MAX_MTU: Final = 1500
MIN_PAYLOAD_SIZE: Final = 16

_RTP_HEADER: Final = Struct(">BBHII")
_U16: Final = Struct(">H")

# AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).
_AVCC_LENGTH_SIZE: Final = 4
_AVCC_SPS_COUNT: Final = 5
_AVCC_FIRST_SPS: Final = 6
# SPS: NAL header, profile_idc, constraint flags, level_idc (H.264 §7.3.2.1.1).
SPS_LEVEL_OFFSET: Final = 3
LEVEL_4_0: Final = 40
_LEVEL_4_0_MAX_FS: Final = 8192  # macroblocks per frame (H.264 Table A-1)
_LEVEL_4_0_MAX_MBPS: Final = 245_760  # macroblocks per second


def payload_budget(mtu: int | None, ipv6: bool) -> int:
    """Return the largest RTP payload whose SRTP datagram fits ``mtu`` (HomeKit's default if None).

    The MTU counts the IP packet: IP and UDP headers, the RTP header and the SRTP tag come off.
    """
    if mtu is None or mtu <= 0:
        mtu = DEFAULT_MTU_IPV6 if ipv6 else DEFAULT_MTU_IPV4
    mtu = min(max(mtu, MIN_MTU), MAX_MTU)
    ip_header = IPV6_HEADER_LENGTH if ipv6 else IPV4_HEADER_LENGTH
    return mtu - ip_header - UDP_HEADER_LENGTH - RTP_HEADER_LENGTH - SRTP_TAG_LENGTH


def avcc_nal_length_size(avcc: bytes) -> int:
    """Return the NAL length-prefix size (1, 2 or 4) an avcC declares."""
    if len(avcc) < _AVCC_FIRST_SPS or avcc[0] != 1:
        raise ValueError("not an AVCDecoderConfigurationRecord")
    size = (avcc[_AVCC_LENGTH_SIZE] & 0x03) + 1
    if size == 3:
        raise ValueError("avcC declares 3-byte NAL lengths")
    return size


def avcc_parameter_sets(avcc: bytes) -> tuple[list[bytes], list[bytes]]:
    """Return the SPS and PPS NAL units of an avcC payload; raise ValueError if malformed."""
    avcc_nal_length_size(avcc)
    pos = _AVCC_SPS_COUNT
    sets: list[list[bytes]] = []
    for mask in (0x1F, 0xFF):  # numOfSequenceParameterSets is 5 bits, PPS count 8
        if pos >= len(avcc):
            raise ValueError("avcC truncated before a parameter-set count")
        count = avcc[pos] & mask
        pos += 1
        found = []
        for _ in range(count):
            if pos + 2 > len(avcc):
                raise ValueError("avcC truncated in a parameter-set length")
            length = _U16.unpack_from(avcc, pos)[0]
            pos += 2
            if length == 0 or pos + length > len(avcc):
                raise ValueError("avcC parameter set overruns the record")
            found.append(bytes(avcc[pos : pos + length]))
            pos += length
        sets.append(found)
    return sets[0], sets[1]


def split_avcc(
    sample: bytes | memoryview, nal_length_size: int = 4
) -> tuple[list[memoryview], bool]:
    """Return the NAL units of an AVCC sample and whether all its bytes were well formed."""
    view = memoryview(sample)
    total = len(view)
    nals: list[memoryview] = []
    pos = 0
    while pos + nal_length_size <= total:
        length = int.from_bytes(view[pos : pos + nal_length_size])
        pos += nal_length_size
        if length == 0:
            continue
        if pos + length > total:
            return nals, False
        nals.append(view[pos : pos + length])
        pos += length
    return nals, pos == total


def patch_sps_level(sps: bytes, level_idc: int = LEVEL_4_0) -> bytes | None:
    """Return ``sps`` with ``level_idc`` rewritten, or None if that would break the bitstream.

    Only the byte changes; a result that would form an emulation-prevention pattern
    (00 00 0x, x <= 3) around it is refused.
    """
    if len(sps) <= SPS_LEVEL_OFFSET + 1 or sps[0] & NAL_TYPE_MASK != NAL_SPS:
        return None
    patched = bytearray(sps)
    patched[SPS_LEVEL_OFFSET] = level_idc
    window = patched[SPS_LEVEL_OFFSET - 2 : SPS_LEVEL_OFFSET + 3]
    for i in range(len(window) - 2):
        if window[i] == 0 and window[i + 1] == 0 and window[i + 2] <= 3:
            return None
    return bytes(patched)


def fits_level_4_0(width: int, height: int, fps: float) -> bool:
    """Return whether a picture size and rate are within H.264 level 4.0's limits."""
    macroblocks = -(-width // 16) * -(-height // 16)
    return macroblocks <= _LEVEL_4_0_MAX_FS and macroblocks * fps <= _LEVEL_4_0_MAX_MBPS


class H264Packetizer:
    """Turn AVCC access units into plaintext RTP packets of one SSRC."""

    __slots__ = (
        "_max_payload",
        "_payload_type",
        "_pps",
        "_sequence",
        "_sps",
        "_ssrc",
        "malformed_samples",
        "octets_sent",
        "packets_sent",
        "sps_level",
    )

    def __init__(
        self, *, ssrc: int, payload_type: int, max_payload_size: int, sequence: int = 0
    ) -> None:
        """Start at ``sequence`` with RTP payloads of at most ``max_payload_size`` bytes."""
        if max_payload_size < MIN_PAYLOAD_SIZE:
            raise ValueError(f"RTP payload budget too small: {max_payload_size}")
        if not 0 <= payload_type <= 127:
            raise ValueError(f"invalid payload type: {payload_type}")
        self._ssrc = ssrc & 0xFFFFFFFF
        self._payload_type = payload_type
        self._max_payload = max_payload_size
        self._sequence = sequence & 0xFFFF
        self._sps: list[bytes] = []
        self._pps: list[bytes] = []
        self.packets_sent = 0
        self.octets_sent = 0  # RTP payload octets, as the sender report counts them
        self.malformed_samples = 0  # samples cut short at a bad NAL length
        # Relabel in-band SPS to this level (copy mode, docs/live-view.md); None: as is.
        self.sps_level: int | None = None

    @property
    def sequence(self) -> int:
        """Return the sequence number of the next packet."""
        return self._sequence

    @property
    def ssrc(self) -> int:
        """Return the SSRC the packets carry."""
        return self._ssrc

    def set_parameter_sets(self, sps: list[bytes], pps: list[bytes]) -> None:
        """Use these SPS/PPS (usually from the init's avcC) before IDRs that lack their own."""
        self._sps = [bytes(nal) for nal in sps if nal]
        self._pps = [bytes(nal) for nal in pps if nal]

    def packetize(
        self, sample: bytes, timestamp: int, keyframe: bool, nal_length_size: int = 4
    ) -> list[bytes]:
        """Return the RTP packets of one access unit, the last one carrying the marker."""
        nals, complete = split_avcc(sample, nal_length_size)
        if not complete:
            self.malformed_samples += 1
        units: list[memoryview | bytes] = [
            nal for nal in nals if nal[0] & NAL_TYPE_MASK not in _DROPPED
        ]
        if self.sps_level is not None:
            level = self.sps_level
            units = [
                (patch_sps_level(bytes(nal), level) or nal)
                if nal[0] & NAL_TYPE_MASK == NAL_SPS
                else nal
                for nal in units
            ]
        nal_units: list[memoryview | bytes] = list(units)
        if keyframe or any(nal[0] & NAL_TYPE_MASK == NAL_IDR for nal in units):
            nal_units = self._with_parameter_sets(units)
        payloads: list[bytes | tuple[bytes, ...]] = []
        for nal in nal_units:
            self._add_nal(payloads, nal)
        timestamp &= 0xFFFFFFFF
        packets = []
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            header = _RTP_HEADER.pack(
                RTP_VERSION_BITS,
                self._payload_type | (0x80 if i == last else 0),
                self._sequence,
                timestamp,
                self._ssrc,
            )
            self._sequence = (self._sequence + 1) & 0xFFFF
            if isinstance(payload, tuple):
                packet = b"".join((header, *payload))
            else:
                packet = header + payload
            self.octets_sent += len(packet) - RTP_HEADER_LENGTH
            packets.append(packet)
        self.packets_sent += len(packets)
        return packets

    def _with_parameter_sets(self, units: list[memoryview | bytes]) -> list[memoryview | bytes]:
        """Put one STAP-A of SPS+PPS first: the AU's own if it has both, else the avcC's."""
        in_band_sps = [nal for nal in units if nal[0] & NAL_TYPE_MASK == NAL_SPS]
        in_band_pps = [nal for nal in units if nal[0] & NAL_TYPE_MASK == NAL_PPS]
        if in_band_sps and in_band_pps:
            sets: list[bytes | memoryview] = [*in_band_sps, *in_band_pps]
            units = [nal for nal in units if nal[0] & NAL_TYPE_MASK not in (NAL_SPS, NAL_PPS)]
        elif self._sps and self._pps:
            sets = [*self._sps, *self._pps]
            units = [nal for nal in units if nal[0] & NAL_TYPE_MASK not in (NAL_SPS, NAL_PPS)]
        else:
            return list(units)
        stap_size = 1 + sum(2 + len(nal) for nal in sets)
        if stap_size > self._max_payload:
            return [*sets, *units]  # each goes out on its own (or as FU-A)
        stap = bytearray([STAP_A_HEADER])
        for nal in sets:
            stap += _U16.pack(len(nal))
            stap += nal
        return [bytes(stap), *units]

    def _add_nal(self, payloads: list[bytes | tuple[bytes, ...]], nal: bytes | memoryview) -> None:
        """Append ``nal`` as a single NAL unit payload or as FU-A fragments."""
        size = len(nal)
        if size <= self._max_payload:
            payloads.append(bytes(nal))
            return
        header = nal[0]
        indicator = bytes([(header & (0x80 | NAL_NRI_MASK)) | NAL_FU_A])
        nal_type = header & NAL_TYPE_MASK
        body = size - 1
        # Fragments differ by at most one byte, so none is a runt (aiortc and Scrypted do too).
        count = -(-body // (self._max_payload - 2))
        base, extra = divmod(body, count)
        pos = 1
        for i in range(count):
            length = base + (1 if i < extra else 0)
            flags = (FU_START if i == 0 else 0) | (FU_END if i == count - 1 else 0)
            payloads.append((indicator, bytes([flags | nal_type]), bytes(nal[pos : pos + length])))
            pos += length
