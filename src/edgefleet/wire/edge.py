"""The ``sagemaker-edge`` device API's vocabulary, shared by the agent and the control plane.

Shapes and limits come from botocore's service model ``sagemaker-edge/2020-09-23``
(shared/spec/control-plane.md): the SigV4 signing name, the ``ModelName`` and ``ModelVersion``
rules of heartbeats, and the ``EdgeDeployment``/``Definition`` shapes of GetDeployments as the
agent acts on them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from edgefleet.errors import InvalidArgument
from edgefleet.names import ALIAS_PATTERN, check_alias

#: SigV4 signing name of the sagemaker-edge service (botocore's service model).
SIGNING_NAME = "sagemaker"

#: ``ModelVersion`` as botocore's sagemaker-edge model allows it (1-64 chars, plus "-" which
#: edgefleet versions use). Names follow the agent's alias rule (``edgefleet.names``).
_VERSION = re.compile(r"^[a-zA-Z0-9 _.-]{1,64}$")
_SHA1_HEX = re.compile(r"[0-9a-f]{40}")


def wire_model_name(name: str | None) -> str | None:
    """``name`` if botocore's ``ModelName`` shape accepts it (4-255 chars), else None."""
    if name and 4 <= len(name) <= 255 and ALIAS_PATTERN.fullmatch(name):
        return name
    return None


def wire_version(version: str | None) -> str | None:
    """``version`` if a ``ModelVersion`` may carry it, else None."""
    return version if version and _VERSION.fullmatch(version) else None


@dataclass(frozen=True)
class Definition:
    """One model of a deployment (botocore's ``Definition``).

    Attributes:
        handle: the model alias to deploy under or undeploy.
        url: where the package archive is (``S3Url``); may be empty for ``UNDEPLOY``.
        sha1: expected SHA-1 of the archive, lower-case hex ("" if none was given).
        state: ``DEPLOY`` or ``UNDEPLOY``.
    """

    handle: str
    url: str
    sha1: str
    state: Literal["DEPLOY", "UNDEPLOY"]


@dataclass(frozen=True)
class Deployment:
    """A deployment handed out by GetDeployments (botocore's ``EdgeDeployment``)."""

    name: str
    policy: Literal["ROLLBACK_ON_FAILURE", "DO_NOTHING"]
    definitions: tuple[Definition, ...]

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Deployment:
        """Parse one ``EdgeDeployment``.

        Raises:
            InvalidArgument: a field is missing or has a value the agent cannot act on; the
                message names it.
        """
        name = raw.get("DeploymentName")
        if not isinstance(name, str) or not ALIAS_PATTERN.fullmatch(name):
            raise InvalidArgument(f"deployment without a valid DeploymentName: {name!r}")
        policy = raw.get("FailureHandlingPolicy") or "ROLLBACK_ON_FAILURE"
        if policy not in ("ROLLBACK_ON_FAILURE", "DO_NOTHING"):
            raise InvalidArgument(f"deployment {name}: unknown FailureHandlingPolicy {policy!r}")
        definitions = []
        for item in raw.get("Definitions") or []:
            if not isinstance(item, Mapping):
                raise InvalidArgument(f"deployment {name}: a definition is not an object")
            handle, state = item.get("ModelHandle"), item.get("State") or "DEPLOY"
            checksum = item.get("Checksum") or {}
            if not isinstance(checksum, Mapping):
                raise InvalidArgument(f"deployment {name}: Checksum is not an object")
            if not isinstance(handle, str):
                raise InvalidArgument(f"deployment {name}: ModelHandle {handle!r} is not a name")
            try:  # the handle becomes the model's alias: the agent's rule applies in full
                check_alias(handle)
            except InvalidArgument as error:
                raise InvalidArgument(f"deployment {name}: ModelHandle: {error.message}") from None
            if state not in ("DEPLOY", "UNDEPLOY"):
                raise InvalidArgument(f"deployment {name}: {handle} has unknown State {state!r}")
            if checksum.get("Type", "SHA1") != "SHA1":
                raise InvalidArgument(f"deployment {name}: {handle} has checksum type "
                                      f"{checksum.get('Type')!r}; only SHA1 is known")
            url = item.get("S3Url") or ""
            if state == "DEPLOY" and not url:
                raise InvalidArgument(f"deployment {name}: {handle} has no S3Url")
            digest = str(checksum.get("Sum") or "").lower()
            # The digest names a folder of the package cache: only 40 hex digits may pass.
            if state == "DEPLOY" and not _SHA1_HEX.fullmatch(digest):
                raise InvalidArgument(f"deployment {name}: {handle} has Checksum.Sum "
                                      f"{digest[:64]!r}; expected 40 hex digits (SHA-1)")
            definitions.append(Definition(handle, url, digest,
                                          cast(Literal["DEPLOY", "UNDEPLOY"], state)))
        if not definitions:
            raise InvalidArgument(f"deployment {name} has no Definitions")
        return cls(name, cast(Literal["ROLLBACK_ON_FAILURE", "DO_NOTHING"], policy),
                   tuple(definitions))
