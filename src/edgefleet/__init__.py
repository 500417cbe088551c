"""edgefleet: a self-hosted replacement for Amazon SageMaker Edge Manager.

Floors, each importing only from the ones below it (``tests/unit/test_layers.py`` checks it):

1. the shared core: ``errors`` (the exception tree; every error carries its gRPC status),
   ``names`` (model alias rule), ``tensors`` (wire dtypes, tensor metadata), ``proto`` (the
   agent's wire contract and stubs), ``wire`` (the ``sagemaker-edge`` and MQTT vocabulary both
   sides speak), ``runtimes`` (ONNX Runtime behind one interface), ``package`` (signed model
   packages);
2. ``agent``: the on-device agent (serving, capture, the device side of the control plane),
   and ``fleet``: the control plane, which never imports the agent;
3. command lines: ``agent.cli`` (``edgefleet-agent``), ``cli`` (the ``edgefleet`` umbrella
   command over ``package.cli`` and ``fleet.cli``).
"""

__version__ = "0.1.0"
