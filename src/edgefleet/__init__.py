"""edgefleet: a self-hosted replacement for Amazon SageMaker Edge Manager.

Floors, each importing only from the ones below it (``tests/unit/test_layers.py`` checks it):

1. the shared core: ``errors`` (the exception tree; every error carries its gRPC status),
   ``names`` (model alias rule), ``tensors`` (wire dtypes, tensor metadata), ``proto`` (the
   agent's wire contract and stubs), ``wire`` (the ``sagemaker-edge`` and MQTT vocabulary both
   sides speak), ``runtimes`` (ONNX Runtime behind one interface), ``package`` (signed model
   packages), ``version`` (release versions);
2. ``agent``: the on-device agent (serving, capture, the device side of the control plane),
   and ``fleet``: the control plane, which never imports the agent;
3. command lines: ``agent.cli`` (``edgefleet-agent``), ``cli`` (the ``edgefleet`` umbrella
   command over ``package.cli`` and ``fleet.cli``).

``edgefleet.__version__`` is the agent version (``1.<YYYYMMDD>.<commit>``, the SageMaker agent's
scheme); the wheel's PEP 440 version and how both are made are in ``edgefleet.version``.
"""


def __getattr__(name: str) -> str:
    """``__version__``: the agent version of this installation, e.g. ``1.20261203.96da6cc``
    (:func:`edgefleet.version.agent_version`; read on first use, so that importing edgefleet
    does not read package metadata)."""
    if name == "__version__":
        from edgefleet.version import agent_version

        return agent_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
