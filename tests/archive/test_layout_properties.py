"""Property tests: archive identifiers never leave the archive; torn files keep whole fragments."""

from __future__ import annotations

from pathlib import Path
import tempfile

from hypothesis import given, settings, strategies as st

from custom_components.hksv.archive.finalize import complete_prefix
from custom_components.hksv.archive.layout import parse_identifier

PART = st.text(alphabet=st.sampled_from("abz_09-./.:\\%"), min_size=0, max_size=12)


@given(st.lists(PART, min_size=1, max_size=5))
def test_accepted_identifiers_are_plain_archive_paths(parts: list[str]) -> None:
    """Whatever is accepted is camera[/day[/HHMMSS]] with no path tricks."""
    identifier = "/".join(parts)
    parsed = parse_identifier(identifier)
    if parsed is None:
        return
    assert "/".join(parsed) == identifier
    assert len(parsed) <= 3
    for part in parsed:
        assert part not in ("", ".", "..")
        assert "\\" not in part and "%" not in part and ":" not in part
    if len(parsed) >= 2:
        assert parsed[1][4] == "-" and parsed[1][7] == "-"


@given(
    st.lists(st.integers(min_value=0, max_value=300), min_size=2, max_size=8),
    st.integers(min_value=0, max_value=4000),
)
@settings(max_examples=200)
def test_a_torn_partial_file_keeps_exactly_its_whole_fragments(
    payloads: list[int], cut: int
) -> None:
    """Cut anywhere: the kept prefix ends after the last whole mdat that follows the moov."""

    def box(kind: bytes, payload: int) -> bytes:
        return (8 + payload).to_bytes(4) + kind + b"\0" * payload

    data = box(b"ftyp", 16) + box(b"moov", 40)
    ends = []
    for index, payload in enumerate(payloads):
        data += box(b"moof" if index % 2 == 0 else b"mdat", payload)
        if index % 2 == 1:
            ends.append(len(data))
    torn = data[: min(cut, len(data))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "partial.mp4"
        path.write_bytes(torn)
        kept = complete_prefix(path)
    expected = max((end for end in ends if end <= len(torn)), default=0)
    assert kept == expected
