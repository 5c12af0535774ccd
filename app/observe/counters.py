"""The meaning of each free-form counter of a stage's metrics row (``StageMetrics.count``).

One numbering for every row, so an exporter reads a counter the same way whichever stage wrote it: the
identify stage writes the face counts and the gallery's size, the publisher the events.
"""

FACES = 0  # faces that reached the identify stage (detected and aligned), summed over frames
NAMED = 1  # of those, faces shown with an enrolled person's name
UNKNOWN = 2  # of those, faces shown as unknown
GALLERY = 3  # gauge: people enrolled in the gallery (refreshed every GALLERY_EVERY seconds)
EVENTS_SENT = 4  # events a sink acknowledged (summed over the sinks)
EVENTS_FAILED = 5  # failed attempts to send an event (each retry counts)
EVENTS_DROPPED = 6  # undelivered events dropped because the on-disk queue was full
EVENTS_ACCEPTED = 7  # events taken into the outbox (duplicates refused are not counted)
EVENTS_OWED = 8  # gauge: events not yet acknowledged by every sink

GALLERY_EVERY = 30.0
COUNTERS_USED = 9  # counters 0..8 carry a meaning (the row has room for app.runtime.metrics.COUNTERS)
