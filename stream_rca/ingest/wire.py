"""Prometheus remote-write 1.0 on the wire: snappy-compressed ``prometheus.WriteRequest``.

The messages are declared here with the protobuf runtime (a descriptor built in code, no
generated module to vendor), with the field numbers of the Remote-Write 1.0 specification:

- ``WriteRequest``: ``repeated TimeSeries timeseries = 1``, ``repeated MetricMetadata
  metadata = 3`` (read as opaque bytes and ignored);
- ``TimeSeries``: ``repeated Label labels = 1``, ``repeated Sample samples = 2``, exemplars (3,
  ignored) and native ``histograms`` (4, refused: not part of 1.0);
- ``Label``: ``string name = 1``, ``string value = 2``; ``Sample``: ``double value = 1``,
  ``int64 timestamp = 2`` (milliseconds).

The body is snappy's block format (not the framed one), as the specification requires;
``cramjam`` decompresses it after the declared length is checked against the limit. Also
here: ``google.rpc.Status`` (``int32 code = 1``, ``string message = 2``), the body of an
OTLP/HTTP error answer.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from stream_rca.ingest.convert import RejectedError

__all__ = [
    "RawWriteRequest",
    "TimeSeries",
    "WriteRequest",
    "decode_write_request",
    "decompress_write_request",
    "encode_write_request",
    "parse_write_request",
    "snappy_length",
    "status_message",
]

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="stream_rca/ingest/remote_write_v1.proto", package="stream_rca.prompb", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = f.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            fd = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                fd.type_name = type_name

    one, many = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("Label", ("name", 1, _F.TYPE_STRING, one, ""), ("value", 2, _F.TYPE_STRING, one, ""))
    message(
        "Sample", ("value", 1, _F.TYPE_DOUBLE, one, ""), ("timestamp", 2, _F.TYPE_INT64, one, "")
    )
    message(
        "TimeSeries",
        ("labels", 1, _F.TYPE_MESSAGE, many, ".stream_rca.prompb.Label"),
        ("samples", 2, _F.TYPE_MESSAGE, many, ".stream_rca.prompb.Sample"),
        ("histograms", 4, _F.TYPE_BYTES, many, ""),
    )
    message(
        "WriteRequest",
        ("timeseries", 1, _F.TYPE_MESSAGE, many, ".stream_rca.prompb.TimeSeries"),
        ("metadata", 3, _F.TYPE_BYTES, many, ""),
    )
    message(  # the same bytes, each series left as its encoded bytes (the fast path's view)
        "RawWriteRequest",
        ("timeseries", 1, _F.TYPE_BYTES, many, ""),
        ("metadata", 3, _F.TYPE_BYTES, many, ""),
    )
    message("Status", ("code", 1, _F.TYPE_INT32, one, ""), ("message", 2, _F.TYPE_STRING, one, ""))
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
WriteRequest: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("stream_rca.prompb.WriteRequest")
)
"""The ``prometheus.WriteRequest`` message class."""
TimeSeries: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("stream_rca.prompb.TimeSeries")
)
"""The ``prometheus.TimeSeries`` message class."""
RawWriteRequest: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("stream_rca.prompb.RawWriteRequest")
)
"""A ``WriteRequest`` whose series stay encoded: ``timeseries`` is a list of bytes."""
_Status: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("stream_rca.prompb.Status")
)


def snappy_length(body: bytes) -> int:
    """The uncompressed length a snappy block declares (its leading varint).

    Raises
    ------
    RejectedError
        ``bad_compression`` when the body does not start with a varint.

    Examples
    --------
    >>> snappy_length(bytes([0xFE, 0x03]) + b"...")
    510
    """
    length = shift = 0
    for i, byte in enumerate(body[:5]):
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length
        shift += 7
        if i == 4:
            break
    raise RejectedError("bad_compression", "the body is not snappy-compressed (block format)")


def decompress_write_request(body: bytes, *, max_decoded: int) -> bytes:
    """Undo the snappy block compression of a remote-write body, its declared size checked
    against the limit first.

    Raises
    ------
    RejectedError
        ``too_large`` (413) or ``bad_compression`` (400).
    """
    import cramjam

    declared = snappy_length(body)
    if declared > max_decoded:
        raise RejectedError(
            "too_large",
            f"the body decompresses to {declared} bytes, more than the limit of {max_decoded}",
            413,
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise RejectedError("bad_compression", f"snappy: {_one_line(exc)}") from None


def parse_write_request(raw: bytes) -> Any:
    """Parse an uncompressed ``WriteRequest``.

    Raises
    ------
    RejectedError
        ``malformed_protobuf`` (400).
    """
    request = WriteRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise RejectedError(
            "malformed_protobuf", f"not a remote-write WriteRequest: {_one_line(exc)}"
        ) from None
    return request


def decode_write_request(body: bytes, *, max_decoded: int) -> Any:
    """Decompress and parse a remote-write body; refuse it whole when it is not one.

    Parameters
    ----------
    body
        The request body (snappy block format).
    max_decoded
        Largest uncompressed size accepted, bytes.

    Raises
    ------
    RejectedError
        ``too_large`` (413), ``bad_compression`` or ``malformed_protobuf`` (400).
    """
    return parse_write_request(decompress_write_request(body, max_decoded=max_decoded))


def encode_write_request(series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> bytes:
    """A snappy-compressed WriteRequest of ``(labels, [(timestamp_ms, value), ...])`` series
    (for tests and benchmarks; labels are sorted by name, as senders must)."""
    import cramjam

    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name in sorted(labels):
            ts.labels.add(name=name, value=labels[name])
        for stamp, value in samples:
            ts.samples.add(timestamp=stamp, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def status_message(code: int, message: str) -> bytes:
    """A serialized ``google.rpc.Status`` (the body of an OTLP/HTTP error answer)."""
    return bytes(_Status(code=code, message=message).SerializeToString())


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
