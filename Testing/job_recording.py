"""Every progress fraction a worker job receives, for tests: sampling ``job.fraction`` by polling may skip a
stage that finishes between two polls, so the tests record the job's own progress events instead."""
from __future__ import annotations


def record_progress(job) -> list[float]:
    """A list that fills with ``job.fraction`` after each ``progress`` event the job takes (job's 0..1 scale)."""
    fractions: list[float] = []
    take_event = job._on_event

    def recording(event: dict) -> None:
        take_event(event)
        if event.get("event") == "progress":
            fractions.append(job.fraction)
    job._on_event = recording
    return fractions
