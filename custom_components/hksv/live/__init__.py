"""Live view for the Home app: RTP/SRTP from Home Assistant's stream (docs live-view.md §5).

Media layer, no Home Assistant imports: h264_rtp.py (RFC 6184 packetizer), srtp.py (RFC 3711),
rtcp.py (RFC 3550 reports), audio.py (AAC → Opus and its packetizer), transcode.py (PyAV H.264
for viewers that cannot take the camera's stream as it is).
"""
