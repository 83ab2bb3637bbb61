"""Home Assistant's stream as hksv sees it, shared by recording and live view.

prebuffer.py (the only module on HA's private stream API: the output provider, the watchdog,
worker health) → gop.py (HA's fMP4 parts assembled into GOPs; pure, no Home Assistant or PyAV).
recording/ and live/ import this package and media/, never each other.
"""
