"""Media tools recording and live view share: the H.264 encoder choice and the transcode budget.

Nothing here imports Home Assistant (live view below its manager must stay free of it).
"""
