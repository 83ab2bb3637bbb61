"""A real ``hass`` process with hksv, driven from outside: shared by benchmarks/soak.py and tests.

``hksv_soak/`` is a small custom integration installed next to hksv in the test configuration
folder: its cameras stream the harness's feeds, its motion sensors switch on command, and it
answers a control socket (motion, status, per-process metrics measured inside Home Assistant,
``hksv_recording_finished`` events). ``feed.py`` runs each camera feed in its own process;
``harness.py`` starts, restarts and stops Home Assistant and drives one hub emulator per camera.
"""
