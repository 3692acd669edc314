"""Time: clocks, watermark strategies and timers.

Event time comes only from records and watermarks; processing time comes
only from the job's one ``Clock``. Nothing else in streamlet reads the wall
clock, so a test can swap in ``streamlet.testing.ManualClock`` and never sleep.
"""
