"""Tests of the HomeKit Data Stream package."""
