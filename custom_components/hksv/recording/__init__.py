"""From Home Assistant's stream segments to HKSV recordings.

prebuffer.py (the only module on HA's private stream API) → gop.py → shaper.py (copy) or
transcode.py (PyAV) → recorder.py, the dataSend delegate; fmp4.py is the box layer.
"""
