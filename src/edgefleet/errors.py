"""The exceptions edgefleet raises, one class per recovery action.

Every class carries the gRPC status code it maps to (``code``), so the wire adapters convert
errors without knowing their meaning, and a message a person can act on (what was wrong, what
was expected)::

    EdgefleetError              INTERNAL
    ├── InvalidArgument         INVALID_ARGUMENT    bad name, tensor, capture id
    │   ├── TensorMismatch      INVALID_ARGUMENT    count, dtype, shape or byte length
    │   └── ConfigError         INVALID_ARGUMENT    config key with a wrong type or value
    ├── NotFound                NOT_FOUND           model not loaded, nothing at url
    ├── AlreadyExists           ALREADY_EXISTS      model alias or capture id in use
    ├── ResourceExhausted       RESOURCE_EXHAUSTED  memory, capture buffer, spool budget
    ├── OutOfRange              OUT_OF_RANGE        capture timestamp in the future
    ├── FailedPrecondition      FAILED_PRECONDITION
    │   └── PackageError        FAILED_PRECONDITION a package the agent will not load
    │       ├── UnsignedPackage                     no signature, unsigned not allowed
    │       ├── TamperedPackage                     a file changed, added or removed
    │       ├── UntrustedSigner                     certificate chains to no root
    │       ├── UnsafeArchive                       traversal, links, devices, size cap
    │       └── UnsupportedModel                    format or runtime not available
    └── Unavailable             UNAVAILABLE         agent shutting down

The codes are the ones SageMaker Edge Manager clients rely on (shared/spec/agent-api.md, "Status
codes clients rely on").
"""

from __future__ import annotations

import grpc


class EdgefleetError(Exception):
    """Base class of every error edgefleet raises on purpose.

    Attributes:
        code: the gRPC status code the wire adapters answer with.
        message: what was wrong and what to do, for a person.
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(EdgefleetError):
    """A request field is malformed: a bad model alias, tensor or capture id."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class TensorMismatch(InvalidArgument):
    """An input tensor does not match the model: count, dtype, shape or byte length."""


class ConfigError(InvalidArgument):
    """An agent config key has a wrong type or value; the message names the key."""


class NotFound(EdgefleetError):
    """The named model, package path or capture id does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(EdgefleetError):
    """The model alias or capture id is already in use."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(EdgefleetError):
    """Out of memory, capture buffer space or spool budget; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(EdgefleetError):
    """A timestamp lies beyond the allowed clock skew in the future."""

    code = grpc.StatusCode.OUT_OF_RANGE


class FailedPrecondition(EdgefleetError):
    """The request is well formed but the system is not in a state to do it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class PackageError(FailedPrecondition):
    """A model package that the agent refuses to load; the message says why."""


class UnsignedPackage(PackageError):
    """The package has no signature and the config does not allow unsigned models."""


class TamperedPackage(PackageError):
    """A file of the package was changed, added or removed after signing."""


class UntrustedSigner(PackageError):
    """The signature is valid but its certificate does not chain to a trusted root."""


class UnsafeArchive(PackageError):
    """An archive member escapes the target directory, is a link or device, or exceeds the cap."""


class UnsupportedModel(PackageError):
    """The model's format or runtime is not available on this device."""


class Unavailable(EdgefleetError):
    """The agent is shutting down or a dependency is temporarily unreachable."""

    code = grpc.StatusCode.UNAVAILABLE


#: Longest piece of client input a message repeats, in characters.
MAX_ECHO_CHARS = 200


def echo(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` as an error message or log line may repeat it: at most ``limit`` characters,
    with ``...`` and the full length when cut (gRPC drops replies whose metadata, the message
    included, exceed the client's 16 KiB limit)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
