"""H.264 access units between Annex B (what encoders write) and AVCC (what RTP packetizing takes).

Pure byte handling, no PyAV: the live transcoder and the direct path both use it.
"""

from __future__ import annotations

from typing import Final

from .h264_rtp import avcc_parameter_sets, split_avcc

_START_CODE: Final = b"\x00\x00\x01"
_NAL_SPS: Final = 7
_NAL_PPS: Final = 8


def annexb_to_avcc(data: bytes) -> bytes:
    """Return Annex B NAL units as 4-byte length-prefixed AVCC."""
    out = bytearray()
    pos = data.find(_START_CODE)
    while pos != -1:
        start = pos + 3
        end = data.find(_START_CODE, start)
        nal_end = len(data) if end == -1 else end
        # A 4-byte start code leaves a zero before the next 3-byte code; trailing zeros are
        # never part of a NAL unit (H.264 §7.4.1.2.4).
        while nal_end > start and data[nal_end - 1] == 0:
            nal_end -= 1
        if nal_end > start:
            out += (nal_end - start).to_bytes(4)
            out += data[start:nal_end]
        pos = end
    return bytes(out)


def parameter_sets_of(data: bytes) -> bytes:
    """Return the SPS and PPS of Annex B, AVCC or avcC ``data`` as AVCC (empty if not both)."""
    if not data:
        return b""
    if data[0] == 1:  # an avcC record (extradata with a global header)
        try:
            sps, pps = avcc_parameter_sets(data)
        except ValueError:
            return b""
        nals = [*sps, *pps]
    else:
        avcc = (
            annexb_to_avcc(data)
            if data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
            else data
        )
        nals = [
            bytes(nal)
            for nal in split_avcc(avcc)[0]
            if nal and nal[0] & 0x1F in (_NAL_SPS, _NAL_PPS)
        ]
    types = {nal[0] & 0x1F for nal in nals}
    if not {_NAL_SPS, _NAL_PPS} <= types:
        return b""
    return b"".join(len(nal).to_bytes(4) + nal for nal in nals)
