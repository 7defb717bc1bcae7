"""Names of the Locust entries (request types) the gRPC users record. Kept apart from the users so
that importing them never imports Locust, whose import monkey-patches the whole process (gevent)."""

UNARY = "Reason"
STREAM_FIRST_STEP = "ReasonStream first step"
STREAM_COMPLETE = "ReasonStream complete"
