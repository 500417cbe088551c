"""The on-device agent, by concern, composed only in ``daemon`` (the ``edgefleet-agent`` command
is ``cli``):

- ``config`` (AgentConfig), ``types`` (transport-free request and response types) and
  ``backoff``: used throughout the agent;
- ``serving``: models and predictions (AgentService, the model registry, shared memory, the
  gRPC adapter);
- ``capture``: CaptureData to disk or an S3 bucket through the durable spool;
- ``device``: the device side of the control plane (control client, deployments, heartbeat
  metrics, MQTT wake-ups).

``serving`` and ``capture`` never import each other; ``device`` builds on ``serving``.
"""
