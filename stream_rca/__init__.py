"""stream-rca: streaming root-cause analysis of anomalies in causal graphs of services."""

from stream_rca.errors import StreamRCAError

__all__ = ["StreamRCAError", "__version__"]

__version__ = "0.1.0"
