"""Telemetry: request records, cost, and the subscribers that turn them into metrics,
traces and the request log.  The hot path only builds a record and emits it."""

from .cost import Price, Pricing
from .record import AttemptRecord, RequestEnded, RequestRecord

__all__ = ["AttemptRecord", "Price", "Pricing", "RequestEnded", "RequestRecord"]
