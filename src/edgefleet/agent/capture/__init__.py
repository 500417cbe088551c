"""The capture pipeline: CaptureData requests to batch files on disk or in an S3 bucket.

``CaptureService`` is what the agent wires in; ``records`` decodes what it stored (see
docs/capture.md).
"""

from edgefleet.agent.capture.service import CaptureService, RetryPolicy, sink_from_config
from edgefleet.agent.capture.sinks import CaptureSink, DiskSink, MemorySink, S3Sink
from edgefleet.wire.capture import (
    BatchFile,
    CaptureRecord,
    DeviceIdentity,
    decode_batch,
    read_batch_file,
)

__all__ = [
    "BatchFile",
    "CaptureRecord",
    "CaptureService",
    "CaptureSink",
    "DeviceIdentity",
    "DiskSink",
    "MemorySink",
    "RetryPolicy",
    "S3Sink",
    "decode_batch",
    "read_batch_file",
    "sink_from_config",
]
