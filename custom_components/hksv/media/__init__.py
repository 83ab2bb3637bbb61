"""Codec facts and tools used by both recording and live view."""
