"""The stock boto3 ``sagemaker`` client pointed at a real ``edgefleet server``, and the pieces
its tests share: operator credentials, a source model in S3, a fresh database of either kind,
and the error codes a refused call carries."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from support import s3server
from support.fleet_server import Server
from support.s3server import S3Server

#: Any role ARN: edgefleet keeps it and gives it back, as SageMaker does, but never assumes it.
ROLE_ARN = "arn:aws:iam::000000000000:role/SageMakerEdgeRole"

#: Codes AWS gives a request whose SigV4 authentication fails (the HTTP status is 4xx).
AUTH_ERROR_CODES = {"InvalidSignatureException", "UnrecognizedClientException",
                    "IncompleteSignature", "MissingAuthenticationToken",
                    "MissingAuthenticationTokenException", "AccessDeniedException"}

#: ``[default]`` of ``<data-dir>/operator-credentials``, as the server writes it at first start.
CREDENTIALS_FILE = "operator-credentials"


def operator_keys(server: Server) -> tuple[str, str]:
    """(access key id, secret access key) of the server's first operator key."""
    parser = configparser.ConfigParser()
    parser.read(server.data_dir / CREDENTIALS_FILE)
    return parser["default"]["aws_access_key_id"], parser["default"]["aws_secret_access_key"]


def sagemaker_client(server: Server, *, access_key: str | None = None,
                     secret_key: str | None = None, region: str = "us-east-1",
                     **config: Any) -> Any:
    """A boto3 ``sagemaker`` client for ``server``, signed with its operator key unless keys are
    given; no retries, so each call is one request. ``config``: more ``botocore.config.Config``
    options (``parameter_validation=False`` to send what botocore would refuse)."""
    default_key, default_secret = operator_keys(server)
    return boto3.session.Session().client(
        "sagemaker", endpoint_url=server.url, region_name=region,
        aws_access_key_id=access_key or default_key,
        aws_secret_access_key=secret_key or default_secret,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, **config))


def s3_env(s3: S3Server) -> dict[str, str]:
    """Environment under which a server's boto3 reads source models from ``s3``."""
    return {"AWS_ENDPOINT_URL_S3": s3.endpoint_url, "AWS_ACCESS_KEY_ID": s3server.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": s3server.SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1"}


def upload(s3: S3Server, bucket: str, key: str, path: Path) -> str:
    """Put ``path`` at ``s3://bucket/key`` (the bucket is created if missing); its URI."""
    client = s3.client()
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)
    client.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def compile_and_package(client: Any, *, compilation: str, packaging: str, model_uri: str,
                        model_name: str, model_version: str, output: str) -> dict[str, Any]:
    """CreateCompilationJob of the ONNX file at ``model_uri`` and CreateEdgePackagingJob of it;
    DescribeEdgePackagingJob's answer once both are COMPLETED (assertions otherwise)."""
    client.create_compilation_job(
        CompilationJobName=compilation, RoleArn=ROLE_ARN,
        InputConfig={"S3Uri": model_uri, "Framework": "ONNX"},
        OutputConfig={"S3OutputLocation": f"{output}/compiled", "TargetDevice": "jetson_nano"},
        StoppingCondition={"MaxRuntimeInSeconds": 900})
    compiled = client.describe_compilation_job(CompilationJobName=compilation)
    assert compiled["CompilationJobStatus"] == "COMPLETED", compiled
    client.create_edge_packaging_job(
        EdgePackagingJobName=packaging, CompilationJobName=compilation, ModelName=model_name,
        ModelVersion=model_version, RoleArn=ROLE_ARN,
        OutputConfig={"S3OutputLocation": f"{output}/packaged"})
    packaged: dict[str, Any] = client.describe_edge_packaging_job(EdgePackagingJobName=packaging)
    assert packaged["EdgePackagingJobStatus"] == "COMPLETED", packaged
    return packaged


def error_of(caught: ClientError) -> tuple[str, int]:
    """(``Error.Code``, HTTP status) of a refused call."""
    return (caught.response["Error"]["Code"],
            caught.response["ResponseMetadata"]["HTTPStatusCode"])
