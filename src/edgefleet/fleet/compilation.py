"""Service layer for compilation jobs: SageMaker Neo's step, kept for its interface only.

Neo compiled a trained model for one target; edgefleet runs ONNX models with ONNX Runtime on
every target, so a compilation job here reads an ONNX model (or a ``.tar.gz`` holding exactly
one ``.onnx`` file) from ``InputConfig.S3Uri``, checks that ONNX Runtime loads it, and keeps it
in the server's object store under ``compilations/<job name>/model.onnx`` for a packaging job.
``OutputConfig`` (``TargetDevice``, ``TargetPlatform``, ...) is recorded as given. Like
packaging, a job runs inside the request that creates it: a model that cannot be read or
loaded gives a FAILED job with the reason, not an error.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.errors import AlreadyExists, InvalidArgument, NotFound
from edgefleet.fleet import schemas
from edgefleet.fleet.db.models import CompilationJob
from edgefleet.fleet.storage import ObjectStore, S3ObjectStore

log = logging.getLogger(__name__)

#: Largest source model read, in bytes (a packaging upload's default limit).
MAX_MODEL_BYTES = 4 << 30

_EXPORT_HINT = ("edgefleet runs ONNX models with ONNX Runtime: export the model to ONNX "
                "(torch.onnx.export, tf2onnx or keras' export(format='onnx'), skl2onnx) and "
                "give Framework ONNX; docs/migrating-from-sagemaker-edge-manager.md shows each")


class SourceError(Exception):
    """The source model cannot be read or is not one ONNX file (the job FAILS with this)."""


def job_out(job: CompilationJob) -> schemas.CompilationJobOut:
    """The API view of a job row."""
    return schemas.CompilationJobOut(
        name=job.name, status="COMPLETED" if job.status == "COMPLETED" else "FAILED",
        failure_reason=job.failure_reason, role_arn=job.role_arn, input_config=job.input_config,
        output_config=job.output_config, stopping_condition=job.stopping_condition,
        tags=job.tags or {}, model_key=job.model_key, model_sha256=job.model_sha256,
        created_at=job.created_at, started_at=job.started_at, ended_at=job.ended_at)


def get_job(session: Session, name: str) -> CompilationJob:
    """The compilation job called ``name``. Raises NotFound."""
    job = session.scalars(select(CompilationJob).where(CompilationJob.name == name)
                          ).one_or_none()
    if job is None:
        raise NotFound(f"compilation job {name!r} does not exist; list jobs with "
                       "`edgefleet compilation list`")
    return job


def _s3_client(bucket: str, store: ObjectStore, endpoint_url: str | None) -> Any:
    if isinstance(store, S3ObjectStore) and store.bucket == bucket:
        return store.client
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def _download(uri: str, target: Path, store: ObjectStore, endpoint_url: str | None) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise SourceError(f"InputConfig.S3Uri {uri!r} is not s3://bucket/key of a model file")
    try:
        client = _s3_client(parts.netloc, store, endpoint_url)
        head = client.head_object(Bucket=parts.netloc, Key=key)
        if int(head["ContentLength"]) > MAX_MODEL_BYTES:
            raise SourceError(f"{uri} is {head['ContentLength']} bytes; at most "
                              f"{MAX_MODEL_BYTES} are read")
        client.download_file(parts.netloc, key, str(target))
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"cannot read {uri}: {exc}") from None


def _onnx_from_archive(archive: Path, target: Path) -> None:
    """Copy the one ``.onnx`` regular file of a ``.tar.gz`` to ``target`` (streamed: nothing
    is extracted, so member paths cannot escape)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            models = [m for m in tar.getmembers() if m.isreg() and m.name.endswith(".onnx")]
            if len(models) != 1:
                raise SourceError(f"the archive holds {len(models)} .onnx files; give one")
            if models[0].size > MAX_MODEL_BYTES:
                raise SourceError(f"{models[0].name} is larger than {MAX_MODEL_BYTES} bytes")
            source = tar.extractfile(models[0])
            assert source is not None  # a regular file
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SourceError(f"the model archive cannot be read: {exc}") from None


def _check_loads(path: Path) -> None:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own classes for bad protobufs and graphs
        raise SourceError(f"ONNX Runtime cannot load the model: {str(exc)[:500]}") from None


def create_job(sessions: sessionmaker[Session], store: ObjectStore,
               spec: schemas.CompilationCreate, *,
               source_endpoint_url: str | None = None) -> schemas.CompilationJobOut:
    """Read, check and keep an ONNX model; record the job as COMPLETED or FAILED.

    Args:
        sessions: session factory (the work runs between two short transactions).
        store: the server's object store (the checked model goes there; a source in the
            same bucket is read through it).
        spec: the job; ``input_config`` needs ``S3Uri`` and ``Framework``.
        source_endpoint_url: S3 endpoint for sources in other buckets (None: boto3's).

    Raises:
        InvalidArgument: no ``InputConfig``, or a framework other than ONNX.
        AlreadyExists: the job name is taken.
    """
    config = spec.input_config
    if not config or "S3Uri" not in config:
        raise InvalidArgument("InputConfig with S3Uri and Framework is required: edgefleet "
                              "reads the model from S3 (ModelPackageVersionArn is not served)")
    if config.get("Framework") != "ONNX":
        raise InvalidArgument(f"InputConfig.Framework is {config.get('Framework')!r}; "
                              + _EXPORT_HINT)
    with sessions() as session:
        if session.scalar(select(CompilationJob.id).where(CompilationJob.name == spec.name)):
            raise AlreadyExists(f"compilation job {spec.name!r} already exists; pick another "
                                "name")
    started = time.time()
    job = CompilationJob(name=spec.name, status="FAILED", failure_reason="",
                         role_arn=spec.role_arn, input_config=config,
                         output_config=spec.output_config,
                         stopping_condition=spec.stopping_condition, tags=spec.tags or None,
                         created_at=started, started_at=started)
    with tempfile.TemporaryDirectory(prefix="edgefleet-compile-") as tmp:
        source, model = Path(tmp) / "source", Path(tmp) / "model.onnx"
        try:
            _download(config["S3Uri"], source, store, source_endpoint_url)
            if tarfile.is_tarfile(source):
                _onnx_from_archive(source, model)
            else:
                source.rename(model)
            _check_loads(model)
        except SourceError as exc:
            job.failure_reason = str(exc)
            log.info("compilation job %s failed: %s", spec.name, exc)
        else:
            job.model_key = f"compilations/{spec.name}/model.onnx"
            with model.open("rb") as src:
                job.model_sha256 = hashlib.file_digest(src, "sha256").hexdigest()
            store.put_file(job.model_key, model)
            job.status = "COMPLETED"
    job.ended_at = time.time()
    try:
        with sessions.begin() as session:
            session.add(job)
    except IntegrityError:
        raise AlreadyExists(f"compilation job {spec.name!r} was created meanwhile; pick "
                            "another name") from None
    return job_out(job)


def describe_job(session: Session, name: str) -> schemas.CompilationJobOut:
    """A compilation job. Raises NotFound."""
    return job_out(get_job(session, name))


def list_jobs(session: Session) -> list[schemas.CompilationJobOut]:
    """Every compilation job, newest first."""
    return [job_out(j) for j in session.scalars(
        select(CompilationJob).order_by(CompilationJob.created_at.desc()))]
