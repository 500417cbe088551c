"""Service layer for packaging jobs: an uploaded ONNX model becomes a signed package.

A job runs inside the request that creates it (the server keeps no background workers, so any
instance can serve any request): :func:`edgefleet.package.build.build_package` checks the model
with ONNX Runtime, signs its manifest with the server's signing key, and the archive
``<model_name>-<model_version>.tar.gz`` is stored under ``packages/<job name>/``. A job may give
the drift baseline of a model input (:mod:`edgefleet.drift`), which the package then carries.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.drift import Baseline
from edgefleet.errors import (
    AlreadyExists,
    EdgefleetError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    UnsupportedModel,
    echo,
)
from edgefleet.fleet import schemas
from edgefleet.fleet.bootstrap import signing_identity
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.db.models import PackagingJob
from edgefleet.fleet.storage import ObjectStore
from edgefleet.package.archive import read_members
from edgefleet.package.build import baseline_from_file, build_signed
from edgefleet.package.manifest import SIGNATURE_NAME, check_model_name, check_model_version
from edgefleet.package.signing import parse_signing_identity

log = logging.getLogger(__name__)


def job_out(job: PackagingJob) -> schemas.PackagingJobOut:
    """The API view of a job row."""
    return schemas.PackagingJobOut(
        name=job.name, model_name=job.model_name, model_version=job.model_version,
        status="COMPLETED" if job.status == "COMPLETED" else "FAILED",
        status_message=job.status_message, artifact=job.artifact_key,
        checksum_sha1=job.checksum_sha1, size_bytes=job.size_bytes, created_at=job.created_at,
        completed_at=job.completed_at, compilation_job_name=job.compilation_job_name,
        role_arn=job.role_arn, output_location=job.output_location, kms_key_id=job.kms_key_id,
        resource_key=job.resource_key, signature=job.signature, tags=job.tags or {})


def get_job(session: Session, name: str) -> PackagingJob:
    """The packaging job called ``name``. Raises NotFound."""
    job = session.scalars(select(PackagingJob).where(PackagingJob.name == name)).one_or_none()
    if job is None:
        raise NotFound(f"packaging job {name!r} does not exist; list jobs with "
                       "`edgefleet packaging list`")
    return job


def _sha1(path: Path) -> str:
    with path.open("rb") as src:  # SHA-1: GetDeployments' Checksum type, not for security
        return hashlib.file_digest(src, lambda: hashlib.sha1(usedforsecurity=False)).hexdigest()


def baseline_from_upload(source: BinaryIO, filename: str | None, model_path: Path, *,
                         tensor: str | None = None) -> Baseline | None:
    """The drift baseline of an uploaded file, for :func:`create_job`.

    The upload is copied next to ``model_path`` (a private temporary folder), under a name of
    the server's own that keeps only the suffix of ``filename``.

    Args:
        source: the uploaded content: a ``.npy`` array of training inputs of one model input
            (first dimension rows) or a ``baseline.json``
            (:func:`edgefleet.package.build.baseline_from_file`).
        filename: the client's file name; only its suffix (``.npy`` or ``.json``) is used.
        model_path: the uploaded model.
        tensor: the model input a ``.npy`` is for (default: the model's only input).

    Returns:
        The baseline, or None when the model itself cannot be loaded to find its only input:
        the build then fails the job with the model's own reason.

    Raises:
        InvalidArgument: another suffix, an unreadable array or baseline, too few rows, or no
            ``tensor`` for a model of several inputs.
        ResourceExhausted: not enough memory for the training inputs.
    """
    suffix = Path(filename or "").suffix.lower()
    if suffix not in (".npy", ".json"):
        raise InvalidArgument(
            f"the baseline upload {echo(filename or '', 100)!r} is neither a .npy array of "
            f"training inputs nor a baseline.json; send one of them, named by its suffix")
    path = model_path.with_name(f"baseline{suffix}")
    with path.open("wb") as out:
        shutil.copyfileobj(source, out)
    try:
        return baseline_from_file(path, model_path, tensor=tensor)
    except UnsupportedModel:
        return None


def create_job(sessions: sessionmaker[Session], key: ServerKey, store: ObjectStore, *,
               name: str, model_name: str, model_version: str, model_path: Path,
               options: schemas.PackagingOptions | None = None,
               compilation_job_name: str | None = None,
               baseline: Baseline | None = None) -> schemas.PackagingJobOut:
    """Build, sign and store a package; record the job as COMPLETED or FAILED.

    A model that cannot be packaged (not ONNX, unsupported dtypes), or a baseline that does not
    fit its inputs, gives a FAILED job whose ``status_message`` says why; the job name stays
    taken so the failure can be looked up.

    Args:
        sessions: session factory (the build runs between two short transactions).
        key: the server key (decrypts the signing key).
        store: where the package goes.
        name: job name (device-name pattern, unique).
        model_name: the package's model name (``^[a-zA-Z0-9](-*[a-zA-Z0-9])*$``).
        model_version: the package's version (e.g. ``1.0``).
        model_path: the uploaded ONNX file.
        options: SageMaker's members (role, output location, keys, tags), kept and shown.
        compilation_job_name: the compilation job the model came from, if any.
        baseline: the drift baseline the package carries as ``baseline.json``, if any.

    Raises:
        InvalidArgument: bad model name or version.
        AlreadyExists: the job name is taken.
        FailedPrecondition: the server's signing key or certificate is unusable (a model the
            server cannot package is not an error here: the job is recorded as FAILED).
    """
    check_model_name(model_name)
    check_model_version(model_version)
    with sessions() as session:
        if session.scalar(select(PackagingJob.id).where(PackagingJob.name == name)) is not None:
            raise AlreadyExists(f"packaging job {name!r} already exists; pick another job name")
        key_pem, cert_pem = signing_identity(session, key)
    try:
        signing_key, chain = parse_signing_identity(
            key_pem, cert_pem, key_source="the server's signing key",
            cert_source="the server's signing certificate")
    except InvalidArgument as exc:  # the server's state, not the uploaded model, is at fault
        raise FailedPrecondition(f"cannot sign packages: {exc.message}; the server's signing "
                                 f"key in the database is damaged") from None
    extra = options or schemas.PackagingOptions()
    job = PackagingJob(name=name, model_name=model_name, model_version=model_version,
                       status="FAILED", status_message="", created_at=time.time(),
                       compilation_job_name=compilation_job_name, role_arn=extra.role_arn,
                       output_location=extra.output_location, kms_key_id=extra.kms_key_id,
                       resource_key=extra.resource_key, tags=extra.tags or None)
    with tempfile.TemporaryDirectory(prefix="edgefleet-pack-") as tmp:
        try:
            archive = build_signed(model_path, name=model_name, version=model_version,
                                   key=signing_key, chain=chain, out_dir=Path(tmp),
                                   baseline=baseline)
        except EdgefleetError as exc:
            job.status_message = f"packaging failed: {exc.message}"
            log.info("packaging job %s failed: %s", name, exc.message)
        else:
            job.artifact_key = f"packages/{name}/{archive.name}"
            job.checksum_sha1 = _sha1(archive)
            job.size_bytes = archive.stat().st_size
            job.signature = base64.b64encode(read_members(
                archive, [SIGNATURE_NAME], max_member_bytes=1 << 20)[SIGNATURE_NAME]).decode()
            store.put_file(job.artifact_key, archive)
            job.status = "COMPLETED"
            job.status_message = "package built and signed"
    job.completed_at = time.time()
    try:
        with sessions.begin() as session:
            session.add(job)
    except IntegrityError:
        raise AlreadyExists(f"packaging job {name!r} was created meanwhile; pick another name"
                            ) from None
    return job_out(job)


def create_job_from_compilation(sessions: sessionmaker[Session], key: ServerKey,
                                store: ObjectStore, *, name: str, compilation_job_name: str,
                                model_name: str, model_version: str,
                                options: schemas.PackagingOptions) -> schemas.PackagingJobOut:
    """Package the model a completed compilation job checked (SageMaker's
    CreateEdgePackagingJob); otherwise as :func:`create_job`.

    Raises:
        NotFound: no such compilation job.
        FailedPrecondition: the compilation job failed.
        InvalidArgument, AlreadyExists: as :func:`create_job`.
    """
    from edgefleet.fleet import compilation

    with sessions() as session:
        source = compilation.get_job(session, compilation_job_name)
        model_key, status, reason = source.model_key, source.status, source.failure_reason
    if status != "COMPLETED" or model_key is None:
        raise FailedPrecondition(f"compilation job {compilation_job_name!r} did not complete "
                                 f"({reason}); run a new one")
    with tempfile.TemporaryDirectory(prefix="edgefleet-compiled-") as tmp:
        path = Path(tmp) / "model.onnx"
        with path.open("wb") as out:
            for chunk in store.open_chunks(model_key):
                out.write(chunk)
        return create_job(sessions, key, store, name=name, model_name=model_name,
                          model_version=model_version, model_path=path, options=options,
                          compilation_job_name=compilation_job_name)


def describe_job(session: Session, name: str) -> schemas.PackagingJobOut:
    """A packaging job. Raises NotFound."""
    return job_out(get_job(session, name))


def list_jobs(session: Session) -> list[schemas.PackagingJobOut]:
    """Every packaging job, newest first."""
    return [job_out(j) for j in
            session.scalars(select(PackagingJob).order_by(PackagingJob.created_at.desc()))]
