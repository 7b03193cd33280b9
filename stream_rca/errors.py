"""Errors raised by stream-rca.

Every error is a :class:`StreamRCAError` and also the built-in that fits it, so callers can
catch either (``except ValueError`` keeps working for a bad graph).
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailableError",
    "ConfigError",
    "CyclicGraphError",
    "DecodeError",
    "GraphError",
    "NotWarmError",
    "StreamRCAError",
    "UnknownNodeError",
]


class StreamRCAError(Exception):
    """Base class of every error stream-rca raises on purpose.

    ``exit_code`` is the command line's exit status for it: 2 for what the user gave (a
    setting, an argument, a file), 1 for what went wrong while running.
    """

    exit_code = 1


class GraphError(StreamRCAError, ValueError):
    """A causal graph is malformed: a self-loop, a duplicate edge, a bad file."""

    exit_code = 2


class CyclicGraphError(GraphError):
    """The causal graph has a cycle; the message names one."""


class UnknownNodeError(StreamRCAError, KeyError):
    """A node name that the graph does not have."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(StreamRCAError, ValueError):
    """A setting or a configuration file is invalid."""

    exit_code = 2


class BrokerUnavailableError(StreamRCAError, ConnectionError):
    """No Kafka broker answered at the bootstrap address with the configured protocol."""


class NotWarmError(StreamRCAError, RuntimeError):
    """A model was asked for a result before it has seen enough data."""


class DecodeError(StreamRCAError, ValueError):
    """An input event could not be decoded or validated.

    Parameters
    ----------
    reason
        A short machine-readable reason code (``"malformed_json"``, ``"unknown_node"``, ...),
        used as the dead-letter reason and as a metric label.
    message
        What was wrong, for people.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
