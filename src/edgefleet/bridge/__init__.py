"""The JSON-RPC 2.0 bridge (``edgefleet bridge``): a gateway's JSON-RPC calls, over HTTP on
127.0.0.1 or line by line on stdin/stdout, turned into calls of a running agent's gRPC socket.

It replaces the SageMaker Edge Manager "Pelion" protocol translator and keeps its method and
parameter names (``listModels``, ``loadModel``, ``unloadModel``, ``predict``, ``captureData``,
``getCaptureDataStatus``). Modules, lowest first:

- ``protocol``: JSON-RPC 2.0 envelopes, batches, notifications and error codes (pure);
- ``config``: :class:`BridgeConfig` from environment variables, a config file and options;
- ``paths``: ``file:///NAME`` and ``s3:///NAME`` URLs resolved inside the configured folders;
- ``storage``: reading and writing those URLs (local files, S3), the package download cache;
- ``media``: images, ``.npy``/``.npz`` and raw bytes to input tensors, outputs to files;
- ``client``: the agent's gRPC client, its errors as JSON-RPC server errors;
- ``methods``: the methods themselves;
- ``http``, ``stdio``: the two transports; ``cli``: the ``edgefleet bridge`` command, which
  composes them.

It is a client of the agent's socket: it never imports ``edgefleet.agent`` or ``edgefleet.fleet``
(docs/bridge.md).
"""
