"""An RTSP camera: one live H.264 feed, shared by every client, joined wherever it is.

Run with the system Python that has GStreamer's RTSP server (python3-gi, GstRtspServer):

    /usr/bin/python3 tests/e2e/rtsp_server.py FEED_PORT [RTSP_PORT]

It reads the MPEG-TS feed at tcp://127.0.0.1:FEED_PORT (a ``LiveFeedSource``), keeps its
H.264 as access units, and serves it at rtsp://127.0.0.1:RTSP_PORT/live (RTSP_PORT 0 or
left out: any free port). Like a camera:

- the feed runs whether or not anyone watches, and a client gets it from the next access
  unit on, usually mid-GOP (nothing waits for a keyframe);
- SPS/PPS are in the SDP (sprop-parameter-sets, from the stream's codec_data) and in-band
  before every IDR;
- every client shares one media (one pipeline), as a camera shares one encoder.

"READY <port>" is printed once the first SPS/PPS has been seen and the server listens, so a
restarted server behaves like a rebooting camera (connection refused, then a live stream).
Video only: tests needing audio use ``LiveFeedSource`` directly.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

MEDIA = (
    "( appsrc name=video is-live=true format=time max-buffers=50 leaky-type=downstream "
    "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


# Frames leave this long after they arrive from the feed: more than the feed's jitter.
SEND_DELAY_NS = 300_000_000


class LiveCamera:
    """Feed every prepared media's appsrc from one always-running demuxer."""

    def __init__(self, feed_port: int, rtsp_port: int) -> None:
        self.rtsp_port = rtsp_port
        self.caps: Gst.Caps | None = None
        # Each client pipeline's appsrc -> offset from the feed's timestamps to its running time.
        self.sources: dict[Gst.Element, int | None] = {}
        self.listening = False
        self.producer = Gst.parse_launch(
            f"tcpclientsrc host=127.0.0.1 port={feed_port} ! tsdemux ! video/x-h264 "
            "! h264parse ! video/x-h264,stream-format=avc,alignment=au "
            "! appsink name=sink emit-signals=true sync=false max-buffers=50 drop=true"
        )
        self.producer.get_by_name("sink").connect("new-sample", self._on_sample)
        bus = self.producer.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)
        bus.connect("message::eos", self._on_error)
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address("127.0.0.1")
        self.server.set_service(str(rtsp_port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(MEDIA)
        factory.set_shared(True)
        factory.connect("media-configure", self._on_media)
        self.server.get_mount_points().add_factory("/live", factory)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        """Hand one access unit to every client pipeline (streaming thread)."""
        sample = sink.emit("pull-sample")
        if self.caps is None:
            self.caps = sample.get_caps()
            GLib.idle_add(self._listen)
        feed_buffer = sample.get_buffer()
        for source, known_offset in list(self.sources.items()):
            clock = source.get_clock()
            if clock is None:
                continue  # not playing yet: a live camera does not queue for later
            offset = known_offset
            if offset is None:
                # The feed's timeline, moved to start a little after this pipeline's "now":
                # the sinks then send each frame on the encoder's schedule, not with the
                # arrival jitter of the TCP feed (clients that time packets by arrival, such
                # as ffmpeg with use_wallclock_as_timestamps, see a steady frame rate).
                now = clock.get_time() - source.get_base_time()
                offset = self.sources[source] = now + SEND_DELAY_NS - feed_buffer.pts
            buffer = feed_buffer.copy()
            buffer.pts = buffer.dts = feed_buffer.pts + offset
            source.emit("push-buffer", buffer)
        return Gst.FlowReturn.OK

    def _listen(self) -> bool:
        if not self.listening:
            self.listening = True
            self.server.attach(None)
            print(f"READY {self.server.get_bound_port()}", flush=True)
        return False

    def _on_media(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        source = media.get_element().get_by_name("video")
        source.set_property("caps", self.caps)
        self.sources[source] = None
        media.connect("unprepared", lambda _media: self.sources.pop(source, None))

    def _on_error(self, _bus: object, message: Gst.Message) -> None:
        print(f"feed ended: {message.type}", file=sys.stderr, flush=True)
        sys.exit(1)


def main() -> None:
    Gst.init(None)
    camera = LiveCamera(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    camera.producer.set_state(Gst.State.PLAYING)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
