"""Reliability policies: each wraps a handler and returns a handler (see ``brace.stack``)."""
