"""Free PyAV's libavfilter graphs as soon as their owner is done with them (PyAV 19).

PyAV resamples audio through libavfilter graphs: an `AudioResampler`'s, and the one PyAV's
audio encoders keep to cut frames to the encoder's frame size. With PyAV 19 a graph and its
filter contexts refer to each other, so a dropped graph, with its worker threads, waits for the
cyclic GC (docs/architecture.md, Recording). Recording's AAC encoder and live view's Opus
encoder both call this when they close.
"""

from __future__ import annotations

import gc

from av.audio.resampler import AudioResampler
from av.filter import Graph


def release_filter_graphs(*owners: object) -> None:
    """Let the filter graphs inside ``owners`` be freed as soon as the owners are.

    PyAV has no call that closes a graph; the filter contexts are held only in the graph's own
    tables, which the GC lists as its referents, and emptying them breaks the cycle. Only for
    owners that are done resampling: a graph emptied this way cannot be used again.
    """
    pending = list(owners)
    while pending:
        owner = pending.pop()
        for referent in gc.get_referents(owner):
            if isinstance(referent, AudioResampler):  # the encoder's own resampler
                pending.append(referent)
            elif isinstance(referent, Graph):
                for table in gc.get_referents(referent):
                    if isinstance(table, dict):
                        table.clear()
