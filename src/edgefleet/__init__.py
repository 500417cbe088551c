"""edgefleet: a self-hosted replacement for Amazon SageMaker Edge Manager.

Where each thing lives:

- ``edgefleet.agent``: the on-device agent (config, model registry, runtimes, the transport-free
  ``AgentService``, the gRPC adapter, capture, the ``edgefleet-agent`` command).
- ``edgefleet.package``: signed model packages (manifest, build, sign, verify, safe extraction),
  shared by the agent and the control plane.
- ``edgefleet.proto``: the wire contract (``agent.proto``) and its generated stubs.
- ``edgefleet.errors``: the exception tree; every error carries the gRPC status it maps to.
- ``edgefleet.cli``: the ``edgefleet`` umbrella command.
"""

__version__ = "0.1.0"
