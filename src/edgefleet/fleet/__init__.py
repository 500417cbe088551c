"""The fleet control plane: device fleets, signed model packages, staged rollouts, fleet reports.

Where each thing lives (the composition root is :func:`edgefleet.fleet.app.create_app`):

- ``settings``: :class:`ServerSettings`, every knob of ``edgefleet server``.
- ``bootstrap``: first start (migrations, server key, admin token, package-signing key).
- ``db``: SQLAlchemy 2 models and the Alembic migrations applied at start.
- ``storage``: object stores (local folder, S3-compatible, in-memory double).
- ``sigv4``: verification of AWS Signature Version 4 requests with botocore's own signer.
- ``fleets``, ``packaging``, ``rollout``, ``reports``, ``edge``: the service layer.
- ``edge_api`` (the ``sagemaker-edge`` device protocol) and ``admin_api`` (management REST):
  thin FastAPI adapters over the services.
- ``client`` and ``cli``: the ``edgefleet`` commands that drive the management API.
"""
