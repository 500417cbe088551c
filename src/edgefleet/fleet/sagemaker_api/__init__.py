"""The ``sagemaker`` service's AWS JSON 1.1 protocol, for operators' existing boto3 scripts.

``boto3.client("sagemaker", endpoint_url=<server>)`` with an operator key drives fleets,
devices, compilation and packaging jobs, deployment plans and stages through the same services
as the REST API and the CLI. :mod:`.protocol` reads and writes the wire format from botocore's
own service model; :mod:`.operations` maps each operation onto the services; :mod:`.routes`
is the ``POST /`` endpoint with operator SigV4 authentication.
"""
