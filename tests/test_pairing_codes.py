"""Setup codes, setup IDs and the X-HM setup URI."""

from __future__ import annotations

import re
import string

from custom_components.hksv.pairing import generate_setup_code, generate_setup_id, setup_uri


def test_setup_codes_are_valid() -> None:
    """Codes have the HAP format and are never one of the forbidden trivial codes."""
    for _ in range(500):
        code = generate_setup_code()
        assert re.fullmatch(r"\d{3}-\d{2}-\d{3}", code)
        assert code not in {"000-00-000", "111-11-111", "123-45-678", "876-54-321"}
    assert len({generate_setup_code() for _ in range(50)}) > 45


def test_setup_uri_encodes_category_flags_and_code() -> None:
    """The payload decodes back to the category, IP flag and code (HAP spec §5.6.3)."""
    setup_id = generate_setup_id()
    assert len(setup_id) == 4 and set(setup_id) <= set(string.digits + string.ascii_uppercase)
    uri = setup_uri(17, "031-45-154", setup_id)
    assert uri.startswith("X-HM://") and uri.endswith(setup_id)
    payload = int(uri[7:16], 36)
    assert payload & 0x7FFFFFF == 3145154
    assert (payload >> 27) & 0xF == 2
    assert (payload >> 31) & 0xFF == 17
    assert payload >> 43 == 0
