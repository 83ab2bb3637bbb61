"""The direct path's parameter sets: from avcC or Annex B extradata, or in band."""

from __future__ import annotations

import struct

from custom_components.hksv.live.direct import parameter_sets, without_credentials
from custom_components.hksv.live.session import ParameterSets

SPS = bytes.fromhex("6742c01e95a0501ed808")
PPS = bytes.fromhex("68ce3c80")


def test_annexb_extradata() -> None:
    """An RTSP/TS camera's Annex B extradata (SDP sprop-parameter-sets) gives SPS and PPS."""
    extradata = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS
    assert parameter_sets(extradata) == ParameterSets([SPS], [PPS], 4)


def test_avcc_extradata() -> None:
    """An MP4-style avcC gives the same parameter sets."""
    avcc = (
        bytes([1, SPS[1], SPS[2], SPS[3], 0xFF, 0xE1])
        + struct.pack(">H", len(SPS))
        + SPS
        + b"\x01"
        + struct.pack(">H", len(PPS))
        + PPS
    )
    assert parameter_sets(avcc) == ParameterSets([SPS], [PPS], 4)


def test_no_extradata_means_in_band() -> None:
    """Without extradata the packetizer uses the SPS/PPS in front of each IDR."""
    assert parameter_sets(None) == parameter_sets(b"") == ParameterSets([], [], 4)


def test_failure_reasons_hide_camera_credentials() -> None:
    """FFmpeg quotes the URL in its errors; diagnostics and logs must not show the password."""
    reason = (
        "ConnectionRefusedError: [Errno 111] Connection refused: "
        "'rtsp://admin:s3cret@192.0.2.7:554/stream1'; last error log: [tcp] "
        "Connection to tcp://admin:s3cret@192.0.2.7:554?timeout=0 failed"
    )
    masked = without_credentials(reason)
    assert "s3cret" not in masked and "admin" not in masked
    assert "rtsp://***@192.0.2.7:554/stream1" in masked
    assert without_credentials("rtsp://192.0.2.7/live") == "rtsp://192.0.2.7/live"
