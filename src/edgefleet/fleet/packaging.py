"""Service layer for packaging jobs: an uploaded ONNX model becomes a signed package.

A job runs inside the request that creates it (the server keeps no background workers, so any
instance can serve any request): :func:`edgefleet.package.build.build_package` checks the model
with ONNX Runtime, signs its manifest with the server's signing key, and the archive
``<model_name>-<model_version>.tar.gz`` is stored under ``packages/<job name>/``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.errors import (
    AlreadyExists,
    EdgefleetError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from edgefleet.fleet import schemas
from edgefleet.fleet.bootstrap import signing_identity
from edgefleet.fleet.crypto import ServerKey
from edgefleet.fleet.db.models import PackagingJob
from edgefleet.fleet.storage import ObjectStore
from edgefleet.package.build import build_signed
from edgefleet.package.manifest import check_model_name, check_model_version
from edgefleet.package.signing import parse_signing_identity

log = logging.getLogger(__name__)


def job_out(job: PackagingJob) -> schemas.PackagingJobOut:
    """The API view of a job row."""
    return schemas.PackagingJobOut(
        name=job.name, model_name=job.model_name, model_version=job.model_version,
        status="COMPLETED" if job.status == "COMPLETED" else "FAILED",
        status_message=job.status_message, artifact=job.artifact_key,
        checksum_sha1=job.checksum_sha1, size_bytes=job.size_bytes, created_at=job.created_at,
        completed_at=job.completed_at)


def get_job(session: Session, name: str) -> PackagingJob:
    """The packaging job called ``name``. Raises NotFound."""
    job = session.scalars(select(PackagingJob).where(PackagingJob.name == name)).one_or_none()
    if job is None:
        raise NotFound(f"packaging job {name!r} does not exist; list jobs with "
                       "`edgefleet packaging list`")
    return job


def _sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def create_job(sessions: sessionmaker[Session], key: ServerKey, store: ObjectStore, *,
               name: str, model_name: str, model_version: str,
               model_path: Path) -> schemas.PackagingJobOut:
    """Build, sign and store a package; record the job as COMPLETED or FAILED.

    A model that cannot be packaged (not ONNX, unsupported dtypes) gives a FAILED job whose
    ``status_message`` says why; the job name stays taken so the failure can be looked up.

    Args:
        sessions: session factory (the build runs between two short transactions).
        key: the server key (decrypts the signing key).
        store: where the package goes.
        name: job name (device-name pattern, unique).
        model_name: the package's model name (``^[a-zA-Z0-9](-*[a-zA-Z0-9])*$``).
        model_version: the package's version (e.g. ``1.0``).
        model_path: the uploaded ONNX file.

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
    job = PackagingJob(name=name, model_name=model_name, model_version=model_version,
                       status="FAILED", status_message="", created_at=time.time())
    with tempfile.TemporaryDirectory(prefix="edgefleet-pack-") as tmp:
        try:
            archive = build_signed(model_path, name=model_name, version=model_version,
                                   key=signing_key, chain=chain, out_dir=Path(tmp))
        except EdgefleetError as exc:
            job.status_message = f"packaging failed: {exc.message}"
            log.info("packaging job %s failed: %s", name, exc.message)
        else:
            job.artifact_key = f"packages/{name}/{archive.name}"
            job.checksum_sha1 = _sha1(archive)
            job.size_bytes = archive.stat().st_size
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


def describe_job(session: Session, name: str) -> schemas.PackagingJobOut:
    """A packaging job. Raises NotFound."""
    return job_out(get_job(session, name))


def list_jobs(session: Session) -> list[schemas.PackagingJobOut]:
    """Every packaging job, newest first."""
    return [job_out(j) for j in
            session.scalars(select(PackagingJob).order_by(PackagingJob.created_at.desc()))]
