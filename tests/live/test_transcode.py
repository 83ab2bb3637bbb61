"""Live transcoder: H.264 and HEVC sources → decodable H.264 at the requested size."""

from __future__ import annotations

from pathlib import Path
import queue
import threading
from typing import Any

import av
import numpy as np
import pytest

from custom_components.hksv.live.avcc import annexb_to_avcc
from custom_components.hksv.live.h264_rtp import H264Packetizer, split_avcc
from custom_components.hksv.live.transcode import LiveVideoTranscoder
from custom_components.hksv.live.transcode_codec import (
    EncodedSample,
    LiveTranscodeError,
    LiveVideoTarget,
    bitrate_for,
    fit_inside,
)
from custom_components.hksv.media.encoders import EncoderChooser, trial_encode
from tests.live.test_h264_rtp import (
    SourceStream,
    decode_annexb,
    depacketize,
    make_h264_mp4,
    read_source,
)
from tests.media import ClipSpec, make_video_frame, read_frame_counter

TIMEOUT = 60  # generous: the machine is shared


def make_hevc_mp4(path: Path, *, frames: int, width: int, height: int) -> Path:
    """Encode a counter clip with libx265 into MP4 (hvcC extradata)."""
    spec = ClipSpec(width=width, height=height, fps=25)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {
            "preset": "ultrafast",
            "x265-params": "keyint=25:min-keyint=25:scenecut=0:bframes=0:log-level=error",
        }
        for index in range(frames):
            out.mux(stream.encode(make_video_frame(spec, index)))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def h264_720p(tmp_path_factory: pytest.TempPathFactory) -> SourceStream:
    """A 2 s 1280x720 H.264 clip with B-frames."""
    path = tmp_path_factory.mktemp("tc") / "h264.mp4"
    return read_source(make_h264_mp4(path, frames=50, bframes=2, width=1280, height=720))


@pytest.fixture(scope="module")
def h264_plain(tmp_path_factory: pytest.TempPathFactory) -> SourceStream:
    """A 3 s 640x360 H.264 clip without B-frames: one output per input, at once."""
    path = tmp_path_factory.mktemp("tc") / "plain.mp4"
    return read_source(make_h264_mp4(path, frames=75, bframes=0, width=640, height=360))


def open_transcoder(**kwargs: Any) -> tuple[LiveVideoTranscoder, queue.Queue[EncodedSample]]:
    """Start a transcoder whose outputs collect in the returned queue."""
    results: queue.Queue[EncodedSample] = queue.Queue()
    return LiveVideoTranscoder(on_sample=results.put, **kwargs), results


def collect(
    transcoder: LiveVideoTranscoder, results: queue.Queue[EncodedSample], count: int
) -> list[EncodedSample]:
    """Return ``count`` outputs, failing if they do not come."""
    out = []
    for _ in range(count):
        try:
            out.append(results.get(timeout=TIMEOUT))
        except queue.Empty:
            pytest.fail(f"only {len(out)} of {count} outputs: {transcoder.stats()}")
    return out


def decode_samples(samples: list[EncodedSample]) -> list[av.VideoFrame]:
    """Decode AVCC outputs (in-band SPS/PPS) as Annex B."""
    units = []
    for sample in samples:
        data, pos, annexb = sample.data, 0, b""
        while pos < len(data):
            size = int.from_bytes(data[pos : pos + 4])
            annexb += b"\x00\x00\x00\x01" + data[pos + 4 : pos + 4 + size]
            pos += 4 + size
        units.append(annexb)
    return decode_annexb(units)


def counter_in_box(frame: av.VideoFrame, width: int, height: int) -> int:
    """Read the frame counter from the picture area centred in a letterboxed frame."""
    gray = frame.to_ndarray(format="gray")
    top, left = (frame.height - height) // 2, (frame.width - width) // 2
    picture = np.ascontiguousarray(gray[top : top + height, left : left + width])
    return read_frame_counter(av.VideoFrame.from_ndarray(picture, format="gray"))


def test_h264_to_watch_size_letterboxed(h264_720p: SourceStream) -> None:
    """720p with B-frames → 320x240: black bars above and below, every frame in order."""
    transcoder, results = open_transcoder(
        codec="avc1", extradata=h264_720p.avcc, target=LiveVideoTarget(320, 240, 30, 299)
    )
    try:
        for data, pts, keyframe in h264_720p.samples:
            assert transcoder.put(data, pts, keyframe)
        # The decoder keeps the B-frame reorder depth (2 frames) until more input arrives.
        outputs = collect(transcoder, results, len(h264_720p.samples) - 2)
    finally:
        transcoder.close()
    assert outputs[0].keyframe
    assert [o.pts for o in outputs] == sorted(pts for _, pts, _ in h264_720p.samples)[:48]
    frames = decode_samples(outputs)
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    assert [counter_in_box(f, 320, 180) for f in frames] == list(range(48))
    luma = frames[10].to_ndarray(format="gray")
    assert luma[:28].max() < 40 and luma[-28:].max() < 40, "black bars"
    stats = transcoder.stats()
    assert (stats.encoder, stats.frames_out, stats.decode_errors) == ("libx264", 48, 0)


def test_hevc_source(tmp_path: Path) -> None:
    """An HEVC camera becomes H.264 at the requested size, frames in order."""
    path = make_hevc_mp4(tmp_path / "hevc.mp4", frames=30, width=640, height=360)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        hvcc = bytes(stream.codec_context.extradata or b"")
        samples = [
            (bytes(p), round(p.pts * stream.time_base * 90_000), p.is_keyframe)
            for p in container.demux(stream)
            if p.size
        ]
    assert hvcc[0] == 1  # an hvcC record, not Annex B
    transcoder, results = open_transcoder(
        codec="hvc1", extradata=hvcc, target=LiveVideoTarget(640, 360, 30, 800)
    )
    try:
        for data, pts, keyframe in samples:
            transcoder.put(data, pts, keyframe)
        outputs = collect(transcoder, results, len(samples))
    finally:
        transcoder.close()
    frames = decode_samples(outputs)
    assert {(f.width, f.height) for f in frames} == {(640, 360)}
    assert [read_frame_counter(f) for f in frames] == list(range(30))


def test_outputs_packetize_and_decode(h264_plain: SourceStream) -> None:
    """Transcoder output goes through H264Packetizer (in-band SPS/PPS → STAP-A) and decodes."""
    transcoder, results = open_transcoder(
        codec="avc1", extradata=h264_plain.avcc, target=LiveVideoTarget(480, 270, 30, 600)
    )
    try:
        for data, pts, keyframe in h264_plain.samples[:40]:
            transcoder.put(data, pts, keyframe)
        outputs = collect(transcoder, results, 40)
    finally:
        transcoder.close()
    packetizer = H264Packetizer(ssrc=0xCAFE0001, payload_type=99, max_payload_size=1000)
    packets = [p for o in outputs for p in packetizer.packetize(o.data, o.pts, o.keyframe)]
    received = depacketize(packets)
    keyframes = [i for i, o in enumerate(outputs) if o.keyframe]
    assert keyframes == [0, 30]  # one-second GOP at 30 fps
    for index in keyframes:
        assert received.first_payload_types[index] == 24
    frames = decode_annexb(received.access_units)
    assert [read_frame_counter(f) for f in frames] == list(range(40))
    assert {(f.width, f.height) for f in frames} == {(480, 270)}


def test_reconfigure_forces_idr_and_changes_rate(h264_plain: SourceStream) -> None:
    """A new bitrate starts with an IDR and really changes the output size."""
    transcoder, results = open_transcoder(
        codec="avc1", extradata=h264_plain.avcc, target=LiveVideoTarget(640, 360, 30, 3000)
    )
    try:
        for data, pts, keyframe in h264_plain.samples[:35]:
            transcoder.put(data, pts, keyframe)
        before = collect(transcoder, results, 35)
        transcoder.reconfigure(150)
        for data, pts, keyframe in h264_plain.samples[35:70]:
            transcoder.put(data, pts, keyframe)
        after = collect(transcoder, results, 35)
        transcoder.force_keyframe()
        data, pts, keyframe = h264_plain.samples[70]
        transcoder.put(data, pts, keyframe)
        (forced,) = collect(transcoder, results, 1)
    finally:
        transcoder.close()
    assert after[0].keyframe and not before[1].keyframe and forced.keyframe
    assert [o.keyframe for o in after[1:30]] == [False] * 29
    stats = transcoder.stats()
    assert (stats.reconfigures, stats.bitrate_kbps) == (1, 150)
    assert transcoder.target.bitrate_kbps == 150
    # Past the IDR, the 150 kbps stretch is far smaller than the 3000 kbps one.
    assert sum(len(o.data) for o in after[1:30]) * 3 < sum(len(o.data) for o in before[1:30])
    frames = decode_samples(before + after + [forced])
    assert [read_frame_counter(f) for f in frames] == list(range(71))


def test_full_queue_skips_to_next_keyframe(h264_plain: SourceStream) -> None:
    """A stalled consumer drops input up to the next source keyframe, never half a GOP."""
    release = threading.Event()
    outputs: list[EncodedSample] = []

    def slow_consumer(sample: EncodedSample) -> None:
        release.wait(TIMEOUT)
        outputs.append(sample)

    transcoder = LiveVideoTranscoder(
        codec="avc1",
        extradata=h264_plain.avcc,
        target=LiveVideoTarget(320, 180, 30, 300),
        on_sample=slow_consumer,
    )
    try:
        accepted = []
        for _ in range(3):  # 225 samples into a 60-sample queue while the consumer is stuck
            for data, pts, keyframe in h264_plain.samples:
                accepted.append(transcoder.put(data, pts + len(accepted) * 3600, keyframe))
        release.set()
        dropped = accepted.count(False)
        assert dropped > 0 and transcoder.stats().input_dropped == dropped
        # After a refusal, the next accepted sample is always a source keyframe.
        flags = [k for _ in range(3) for _, _, k in h264_plain.samples]
        for i in range(1, len(accepted)):
            if accepted[i] and not accepted[i - 1]:
                assert flags[i]
        wanted = accepted.count(True)
        for _ in range(TIMEOUT * 10):
            if len(outputs) >= wanted:
                break
            threading.Event().wait(0.1)
    finally:
        release.set()
        transcoder.close()
    assert len(outputs) == accepted.count(True)


def test_close_leaves_no_thread(h264_plain: SourceStream) -> None:
    """close() joins the worker even with queued work; put afterwards is refused."""
    transcoder, _ = open_transcoder(
        codec="avc1", extradata=h264_plain.avcc, target=LiveVideoTarget(320, 240, 15, 200)
    )
    for data, pts, keyframe in h264_plain.samples[:30]:
        transcoder.put(data, pts, keyframe)
    transcoder.close()
    transcoder.close()
    assert not transcoder.running
    assert not [t for t in threading.enumerate() if t.name.startswith("hksv_live_transcode")]
    assert not transcoder.put(*h264_plain.samples[0])


async def test_async_close(h264_plain: SourceStream) -> None:
    """async_close stops the worker without blocking the loop."""
    transcoder, _ = open_transcoder(
        codec="avc1", extradata=h264_plain.avcc, target=LiveVideoTarget(320, 240, 15, 200)
    )
    transcoder.put(*h264_plain.samples[0])
    await transcoder.async_close()
    assert not transcoder.running


def test_failures_surface() -> None:
    """Unknown codecs fail at once; no usable encoder stops the worker with the error kept."""
    with pytest.raises(LiveTranscodeError, match="decode"):
        open_transcoder(codec="vp9", extradata=b"", target=LiveVideoTarget(320, 240, 30, 300))
    transcoder, _ = open_transcoder(
        codec="avc1",
        extradata=b"",
        target=LiveVideoTarget(320, 240, 30, 300),
        encoders=EncoderChooser(("no_such_encoder",)),
    )
    assert transcoder.wait_started(TIMEOUT)
    transcoder.close()
    assert isinstance(transcoder.error, LiveTranscodeError)
    assert not transcoder.put(b"\x00\x00\x00\x01\x65", 0, True)


@pytest.mark.parametrize(
    ("src", "box", "expected"),
    [
        ((1920, 1080), (320, 240), (320, 180)),
        ((640, 480), (1280, 720), (960, 720)),
        ((1280, 720), (640, 360), (640, 360)),
        ((2560, 1920), (480, 270), (360, 270)),
    ],
)
def test_fit_inside(src: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]) -> None:
    """Scaling keeps the aspect, fills one side of the box and stays even."""
    assert fit_inside(*src, *box) == expected


def test_bitrate_floor() -> None:
    """The request wins above the floor; the floor scales with the picture."""
    assert bitrate_for(LiveVideoTarget(1280, 720, 30, 299)) == 500
    assert bitrate_for(LiveVideoTarget(1280, 720, 30, 2000)) == 2000
    assert bitrate_for(LiveVideoTarget(320, 240, 30, 100)) == 150
    assert bitrate_for(LiveVideoTarget(640, 360, 30, 132)) == 150


def test_annexb_to_avcc() -> None:
    """3- and 4-byte start codes become 4-byte lengths; trailing zeros are dropped."""
    data = b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88\x00"
    expected = b"\x00\x00\x00\x02\x67\x42\x00\x00\x00\x02\x68\xce\x00\x00\x00\x02\x65\x88"
    assert annexb_to_avcc(data) == expected


def test_put_with_wait_never_drops(h264_plain: SourceStream) -> None:
    """A caller off the event loop can wait for queue space instead of dropping."""
    outputs: list[EncodedSample] = []
    release = threading.Event()

    def slow_consumer(sample: EncodedSample) -> None:
        release.wait(TIMEOUT)
        outputs.append(sample)

    transcoder = LiveVideoTranscoder(
        codec="avc1",
        extradata=h264_plain.avcc,
        target=LiveVideoTarget(320, 180, 30, 300),
        on_sample=slow_consumer,
    )
    try:
        timer = threading.Timer(0.5, release.set)
        timer.start()
        accepted = [transcoder.put(*sample, wait=TIMEOUT) for sample in h264_plain.samples]
        timer.join()
        for _ in range(TIMEOUT * 10):
            if len(outputs) == len(accepted):
                break
            threading.Event().wait(0.1)
    finally:
        release.set()
        transcoder.close()
    assert all(accepted) and transcoder.stats().input_dropped == 0
    assert len(outputs) == len(h264_plain.samples)


def test_failing_hardware_encoder_falls_back(h264_plain: SourceStream) -> None:
    """A hardware encoder that passes the chooser's test but fails for real gives way to libx264.

    The chooser's test encode of h264_nvenc is simulated to pass; opening the real h264_nvenc
    then fails on this machine (no NVIDIA GPU) and libx264 takes over.
    """

    def nvenc_passes(name: str, width: int, height: int) -> None:
        trial_encode("libx264" if name == "h264_nvenc" else name, width, height)

    chooser = EncoderChooser(("h264_nvenc", "libx264"), trial=nvenc_passes)
    transcoder, results = open_transcoder(
        codec="avc1",
        extradata=h264_plain.avcc,
        target=LiveVideoTarget(320, 180, 30, 300),
        encoders=chooser,
    )
    try:
        for sample in h264_plain.samples[:10]:
            transcoder.put(*sample)
        outputs = collect(transcoder, results, 10)
    finally:
        transcoder.close()
    assert transcoder.error is None and transcoder.stats().encoder == "libx264"
    assert chooser.encoder_for(320, 180) == "libx264"  # remembered for this size
    assert "h264_nvenc failed at 320x180" in chooser.diagnostics()["fallbacks"][0]
    assert [read_frame_counter(f) for f in decode_samples(outputs)] == list(range(10))


@pytest.mark.parametrize("headers", ["first_idr_only", "extradata_only"])
def test_every_idr_carries_parameter_sets(
    h264_plain: SourceStream, monkeypatch: pytest.MonkeyPatch, headers: str
) -> None:
    """SPS/PPS go in-band before every IDR even from an encoder that does not repeat them.

    Hardware encoders send them once (with the first IDR) or only in extradata; libx264 is
    made to do the same here, and every IDR that reaches RTP must still start with them.
    """
    from av.codec.context import Flags

    from custom_components.hksv.live import transcode_codec as transcode

    real_options = transcode.LiveVideoCodec._encoder_options
    real_open = transcode.LiveVideoCodec._open_named_encoder

    def no_repeat(self: transcode.LiveVideoCodec, target: LiveVideoTarget) -> dict[str, str]:
        options = real_options(self, target)
        params = options["x264-params"].replace("repeat-headers=1", "repeat-headers=0")
        return options | {"x264-params": params}

    seen_headers: list[bool] = []
    real_to_avcc = transcode.annexb_to_avcc

    def headers_once(data: bytes) -> bytes:
        # What the encoder sends in-band: SPS/PPS with the first IDR, never again.
        avcc = real_to_avcc(data)
        if not seen_headers:
            seen_headers.append(b"\x00\x00\x01\x67" in data)
            return avcc
        nals, _ = split_avcc(avcc)
        kept = [bytes(n) for n in nals if n[0] & 0x1F not in (7, 8)]
        return b"".join(len(n).to_bytes(4) + n for n in kept)

    def open_with_global_header(self: transcode.LiveVideoCodec) -> Any:
        if headers != "extradata_only":
            return real_open(self)
        # As the real one, but with SPS/PPS in extradata only (a global header).
        encoder: Any = av.CodecContext.create(self._encoder_name, "w")
        target = self._controls.target
        encoder.width, encoder.height, encoder.pix_fmt = target.width, target.height, "yuv420p"
        encoder.time_base = transcode.TIME_BASE
        encoder.framerate = target.fps
        encoder.gop_size = target.fps
        encoder.max_b_frames = 0
        encoder.bit_rate = 300_000
        encoder.flags |= Flags.global_header
        encoder.options = self._encoder_options(target)
        encoder.open()
        assert encoder.extradata, "the encoder keeps SPS/PPS in extradata"
        return encoder

    if headers == "extradata_only":
        monkeypatch.setattr(transcode.LiveVideoCodec, "_encoder_options", no_repeat)
        monkeypatch.setattr(
            transcode.LiveVideoCodec, "_open_named_encoder", open_with_global_header
        )
    else:
        monkeypatch.setattr(transcode, "annexb_to_avcc", headers_once)
    transcoder, results = open_transcoder(
        codec="avc1",
        extradata=h264_plain.avcc,
        target=LiveVideoTarget(320, 180, 30, 300),
        encoders=EncoderChooser(("libx264",)),
    )
    try:
        for data, pts, keyframe in h264_plain.samples[:70]:
            transcoder.put(data, pts, keyframe, wait=TIMEOUT)
        outputs = collect(transcoder, results, 70)
    finally:
        transcoder.close()
    keyframes = [i for i, o in enumerate(outputs) if o.keyframe]
    assert keyframes == [0, 30, 60]
    assert seen_headers == ([] if headers == "extradata_only" else [True])
    packetizer = H264Packetizer(ssrc=0xCAFE0001, payload_type=99, max_payload_size=1000)
    packets = [p for o in outputs for p in packetizer.packetize(o.data, o.pts, o.keyframe)]
    received = depacketize(packets)
    for index in keyframes:
        # STAP-A of SPS+PPS first in every IDR access unit, from the samples alone.
        assert received.first_payload_types[index] == 24, index
        first = received.access_units[index]
        assert first.count(b"\x00\x00\x00\x01\x67") + first.count(b"\x00\x00\x01\x67") >= 1
    # A viewer joining at the second IDR decodes from there without anything else.
    frames = decode_annexb(received.access_units[30:])
    assert [read_frame_counter(f) for f in frames] == list(range(30, 70))
