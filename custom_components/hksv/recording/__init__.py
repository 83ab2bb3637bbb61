"""From Home Assistant's stream segments to HKSV recordings.

../source/ (HA's stream tap and the GOP ring) → shaper.py (copy) or transcode.py (PyAV on a
worker thread: pipeline.py, av_media.py, av_encode.py, encoding.py) → recorder.py, the
dataSend delegate (with clip_media.py, its stateless helpers, and summary.py, how a recording
ended); mode.py decides copy or transcode. The fMP4 box layer is ../media/fmp4/. Nothing here
imports ../live/.
"""
