"""Codec facts and tools used by both recording and live view: fMP4, H.264, the encoder choice
and the transcode budget.

Nothing here imports Home Assistant (live view below its manager must stay free of it).
"""
