"""Tests for the recording pipeline."""
