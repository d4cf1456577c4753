"""The OpenAI-compatible HTTP gateway (``brace serve``)."""

from .app import Gateway

__all__ = ["Gateway"]
