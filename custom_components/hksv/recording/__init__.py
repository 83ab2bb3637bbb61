"""From Home Assistant's stream segments to HKSV recordings.

prebuffer.py (the only module on HA's private stream API) → gop.py → shaper.py (copy) or
transcode.py (PyAV on a worker thread: av_media.py, encoding.py) → recorder.py, the dataSend
delegate; mode.py decides copy or transcode. The fMP4 box layer is ../media/fmp4/.
"""
