"""Request and response shapes of the management REST API and of the device API.

Device-API shapes mirror botocore's ``sagemaker-edge`` 2020-09-23 service model (field names,
lengths and patterns from ``botocore/data/sagemaker-edge/2020-09-23/service-2.json.gz``); boto3
checks lengths and types on the device, the server checks the patterns too. Management shapes
carry the meaning of SageMaker's edge operations (shared/spec/control-plane.md) in snake_case.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import grpc
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from edgefleet.names import ALIAS_PATTERN

#: HTTP status per error code (the codes edgefleet.errors attaches to each error class), for
#: the REST API and the dashboard alike.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}

#: DeviceName / DeviceFleetName in the service model.
NAME_PATTERN = r"^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$"
#: EntityName (deployment names, model handles, plan and stage names): no underscores; the
#: agent's model alias rule, since model handles become aliases.
ENTITY_PATTERN = ALIAS_PATTERN.pattern
#: Version (agent and model versions), plus "-" which edgefleet package versions allow.
VERSION_PATTERN = r"^[a-zA-Z0-9 _.-]+$"

NameStr = Annotated[str, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]
EntityStr = Annotated[str, Field(min_length=1, max_length=63, pattern=ENTITY_PATTERN)]
ModelNameStr = Annotated[str, Field(min_length=4, max_length=255, pattern=ENTITY_PATTERN)]
VersionStr = Annotated[str, Field(min_length=1, max_length=64, pattern=VERSION_PATTERN)]
FailurePolicy = Literal["ROLLBACK_ON_FAILURE", "DO_NOTHING"]
SelectionType = Literal["SELECTION", "PERCENTAGE", "NAMECONTAINS"]


# -- device API (sagemaker-edge) -----------------------------------------------------------------

#: A number a device reports: NaN and infinity are refused (400), because JSON has no spelling
#: for them and PostgreSQL's json columns refuse what Python writes for them.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Edge(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EdgeMetric(_Edge):
    """A metric of the agent or of a model; ``Timestamp`` is epoch seconds."""

    Dimension: Annotated[str, Field(min_length=1, max_length=1000,
                                    pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9/])*$")] | None = None
    MetricName: Annotated[str, Field(min_length=4, max_length=100,
                                     pattern=ENTITY_PATTERN)] | None = None
    Value: FiniteFloat | None = None
    Timestamp: FiniteFloat | None = None


class EdgeModel(_Edge):
    """A model a heartbeat reports; times are epoch seconds."""

    ModelName: ModelNameStr | None = None
    ModelVersion: VersionStr | None = None
    LatestSampleTime: FiniteFloat | None = None
    LatestInference: FiniteFloat | None = None
    ModelMetrics: list[EdgeMetric] = []


class EdgeDeploymentModel(_Edge):
    """The outcome of one model of a deployment on the device."""

    ModelHandle: EntityStr | None = None
    ModelName: ModelNameStr | None = None
    ModelVersion: VersionStr | None = None
    DesiredState: Literal["DEPLOY", "UNDEPLOY"] | None = None
    State: Literal["DEPLOY", "UNDEPLOY"] | None = None
    Status: Literal["SUCCESS", "FAIL"] | None = None
    StatusReason: str | None = None
    RollbackFailureReason: str | None = None


class EdgeDeploymentResult(_Edge):
    """What the device did with a deployment GetDeployments handed out."""

    DeploymentName: EntityStr
    DeploymentStatus: EntityStr | None = None
    DeploymentStatusMessage: str | None = None
    DeploymentStartTime: FiniteFloat | None = None
    DeploymentEndTime: FiniteFloat | None = None
    DeploymentModels: list[EdgeDeploymentModel] = []


class DeviceRef(_Edge):
    """Body of GetDeviceRegistration and GetDeployments."""

    DeviceName: NameStr
    DeviceFleetName: NameStr


class Heartbeat(DeviceRef):
    """Body of SendHeartbeat."""

    AgentVersion: VersionStr
    AgentMetrics: list[EdgeMetric] = []
    Models: list[EdgeModel] = []
    DeploymentResult: EdgeDeploymentResult | None = None


# -- management API ------------------------------------------------------------------------------

class FleetCreate(BaseModel):
    """A new device fleet."""

    name: NameStr
    description: str = Field(default="", max_length=800)
    output_location: str = Field(
        min_length=1, max_length=1024,
        description="Where the fleet's agents write captured data, e.g. s3://bucket/prefix.")
    role_arn: str | None = Field(default=None, max_length=2048,
                                 description="Kept and shown (SageMaker's RoleArn), not used.")
    kms_key_id: str | None = Field(default=None, max_length=2048,
                                   description="Kept and shown, not used.")
    enable_iot_role_alias: StrictBool = Field(
        default=False, description="Give the fleet SageMaker's IoT role alias name "
                                   "(SageMakerEdge-<fleet>); kept and shown, not used.")
    tags: dict[str, str] = Field(default={}, max_length=50)


class FleetUpdate(BaseModel):
    """New values for a fleet's members; those left out keep theirs."""

    description: str | None = Field(default=None, max_length=800)
    output_location: str | None = Field(default=None, min_length=1, max_length=1024)
    role_arn: str | None = Field(default=None, max_length=2048)
    kms_key_id: str | None = Field(default=None, max_length=2048)
    enable_iot_role_alias: StrictBool | None = None


class ErrorOut(BaseModel):
    """Every error of the management API: the error's class and what to do about it."""

    error: str = Field(description="The error's class, e.g. NotFound or AlreadyExists.")
    message: str = Field(description="What was wrong and what to do, for a person to read.")


class FleetOut(BaseModel):
    """A device fleet; ``created_at`` is epoch seconds."""

    name: str
    description: str
    output_location: str
    created_at: float
    device_count: int
    updated_at: float | None = None
    role_arn: str | None = None
    kms_key_id: str | None = None
    iot_role_alias: str | None = None
    tags: dict[str, str] = {}


class DeviceRegister(BaseModel):
    """A device to register; the response carries its credentials once."""

    name: NameStr
    fleet: NameStr
    description: str = Field(default="", max_length=40)
    iot_thing_name: str | None = Field(default=None, max_length=128)
    root_certs_path: str = Field(
        default="/etc/edgefleet/root-certs",
        description="Folder on the device holding the package-signing root certificate; "
                    "written into the agent config.")


class DeviceUpdate(BaseModel):
    """New description and IoT thing name of a device (None: unchanged)."""

    name: NameStr
    description: str | None = Field(default=None, max_length=40)
    iot_thing_name: str | None = Field(default=None, max_length=128)


class CredentialsRequest(BaseModel):
    """Options of a credentials re-issue."""

    root_certs_path: str = Field(
        default="/etc/edgefleet/root-certs",
        description="Folder on the device holding the package-signing root certificate; "
                    "written into the agent config.")


class Credentials(BaseModel):
    """A device's SigV4 credentials; the secret is shown only at registration."""

    access_key_id: str
    secret_access_key: str


class ModelOut(BaseModel):
    """A model a device reported in its latest heartbeat (times: epoch seconds)."""

    model_name: str
    model_version: str | None
    latest_sample_time: float | None
    latest_inference: float | None
    metrics: list[dict[str, Any]]


class DeviceDeployment(BaseModel):
    """A stage that selected the device, and the device's status in it."""

    plan: str
    stage: str
    deployment_name: str
    status: str
    status_message: str


class DeviceSummary(BaseModel):
    """A registered device and what its latest heartbeat said (times: epoch seconds), as
    ``device list`` shows it: without models and deployments (``device describe`` has them)."""

    name: str
    fleet: str
    description: str
    iot_thing_name: str | None
    access_key_id: str
    registered_at: float
    latest_heartbeat: float | None
    agent_version: str | None
    agent_metrics: list[dict[str, Any]] = []


class DeviceWithModels(DeviceSummary):
    """A device summary with the models of its latest heartbeat (the sagemaker API's
    ListDevices shows them; the REST list does not)."""

    models: list[ModelOut] = []


class DeviceOut(DeviceSummary):
    """A device as ``device describe`` shows it: also its models and deployments."""

    models: list[ModelOut] = []
    deployments: list[DeviceDeployment] = []


class DeviceRegistered(BaseModel):
    """The answer to a registration: the device, its credentials, a ready agent config."""

    device: DeviceSummary
    credentials: Credentials
    agent_config: dict[str, Any]


class DevicePage(BaseModel):
    """A page of devices ordered by name; pass ``next_after`` as ``after`` for the next page."""

    devices: list[DeviceSummary]
    next_after: str | None


class PackagingJobOut(BaseModel):
    """A packaging job; ``artifact`` is the package's object key, ``checksum_sha1`` its SHA-1."""

    name: str
    model_name: str
    model_version: str
    status: Literal["COMPLETED", "FAILED"]
    status_message: str
    artifact: str | None
    checksum_sha1: str | None
    size_bytes: int | None
    created_at: float
    completed_at: float | None
    compilation_job_name: str | None = None
    role_arn: str | None = None
    output_location: str | None = None
    kms_key_id: str | None = None
    resource_key: str | None = None
    signature: str | None = Field(
        default=None, description="Base64 of the package's manifest signature.")
    tags: dict[str, str] = {}

    @property
    def updated_at(self) -> float:
        """When the job last changed (it completes within its request)."""
        return self.completed_at or self.created_at


class PackagingOptions(BaseModel):
    """SageMaker's members of a packaging job, kept and shown, not used: the package always
    goes to the server's object store, signed with the server's key."""

    role_arn: str | None = None
    output_location: str | None = None
    kms_key_id: str | None = None
    resource_key: str | None = None
    preset_deployment_type: str | None = None
    preset_deployment_config: str | None = None
    tags: dict[str, str] = {}


class CompilationCreate(BaseModel):
    """A compilation job: SageMaker's CreateCompilationJob members (its JSON names inside the
    configs). ``input_config`` needs ``S3Uri`` and ``Framework`` ``ONNX``."""

    name: NameStr
    role_arn: str = Field(min_length=1, max_length=2048)
    input_config: dict[str, Any]
    output_config: dict[str, Any] = {}
    stopping_condition: dict[str, Any] = {}
    tags: dict[str, str] = {}


class CompilationJobOut(BaseModel):
    """A compilation job; ``model_key`` is the checked ONNX model's key in the object store."""

    name: str
    status: Literal["COMPLETED", "FAILED"]
    failure_reason: str
    role_arn: str
    input_config: dict[str, Any]
    output_config: dict[str, Any]
    stopping_condition: dict[str, Any]
    tags: dict[str, str]
    model_key: str | None
    model_sha256: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None

    @property
    def updated_at(self) -> float:
        """When the job last changed (it completes within its request)."""
        return self.ended_at or self.created_at


class OperatorKeyCreate(BaseModel):
    """A new operator key of the sagemaker API."""

    description: str = Field(default="", max_length=200)


class OperatorKeyOut(BaseModel):
    """An operator key without its secret (times: epoch seconds)."""

    access_key_id: str
    description: str
    created_at: float
    revoked_at: float | None


class OperatorKeyCreated(BaseModel):
    """A new operator key: the only time its secret is shown."""

    access_key_id: str
    secret_access_key: str
    description: str
    created_at: float


class Selection(BaseModel):
    """How a stage selects devices of the plan's fleet."""

    type: SelectionType
    device_names: list[NameStr] | None = Field(default=None, max_length=10000)
    percentage: int | None = Field(default=None, ge=1, le=100)
    name_contains: str | None = Field(default=None, min_length=1, max_length=63)

    @model_validator(mode="after")
    def _fields_match_type(self) -> Selection:
        needed = {"SELECTION": "device_names", "PERCENTAGE": "percentage",
                  "NAMECONTAINS": "name_contains"}[self.type]
        if getattr(self, needed) in (None, []):
            raise ValueError(f"selection type {self.type} needs {needed}")
        extra = [f for f in ("device_names", "percentage", "name_contains")
                 if f != needed and getattr(self, f) is not None]
        if extra:
            raise ValueError(f"selection type {self.type} takes only {needed}, not "
                             f"{', '.join(extra)}")
        return self


class StageSpec(BaseModel):
    """A stage of a deployment plan."""

    name: EntityStr
    selection: Selection
    failure_handling_policy: FailurePolicy = "ROLLBACK_ON_FAILURE"


class PlanModelSpec(BaseModel):
    """A model of a plan: the handle devices see, and the packaging job whose package it is."""

    model_handle: EntityStr
    packaging_job: NameStr


class PlanCreate(BaseModel):
    """A new deployment plan."""

    name: EntityStr
    fleet: NameStr
    models: list[PlanModelSpec] = Field(min_length=1, max_length=50)
    stages: list[StageSpec] = Field(default=[], max_length=100)
    tags: dict[str, str] = Field(default={}, max_length=50)


class StageOut(BaseModel):
    """A stage; ``device_counts`` maps device status to count (times: epoch seconds)."""

    name: str
    position: int
    deployment_name: str
    selection: Selection
    failure_handling_policy: FailurePolicy
    status: Literal["READYTODEPLOY", "INPROGRESS", "STOPPED"]
    started_at: float | None
    stopped_at: float | None
    device_counts: dict[str, int]


class PlanOut(BaseModel):
    """A deployment plan with its models and stages."""

    name: str
    fleet: str
    created_at: float
    models: list[PlanModelSpec]
    stages: list[StageOut]
    updated_at: float | None = None
    tags: dict[str, str] = {}


class StageDeviceOut(BaseModel):
    """A device of a started stage and its status (``updated_at``: epoch seconds).

    ``status`` is READYTODEPLOY (not fetched yet), INPROGRESS (fetched by GetDeployments),
    DEPLOYED, FAILED (from the heartbeat's DeploymentResult) or STOPPED (stage stopped first).
    """

    device_name: str
    status: str
    status_message: str
    models: list[dict[str, Any]]
    updated_at: float
    latest_heartbeat: float | None = Field(
        default=None, description="The device's latest heartbeat (epoch seconds), if any.")
    hint: str | None = Field(
        default=None, description="Why the device may be stuck, when it has not polled or "
                                  "sent a heartbeat since the stage started.")
    deployed_stage: str | None = Field(
        default=None, description="The stage of this plan whose deployment the device has "
                                  "DEPLOYED most recently, if any.")
    started_at: float | None = Field(default=None, description="When the stage started.")


class AgentVersionCount(BaseModel):
    """How many devices of the fleet run an agent version."""

    version: str
    agent_count: int


class ModelStat(BaseModel):
    """Per model version: devices reporting it, split by liveness (see FleetReport)."""

    model_name: str
    model_version: str | None
    offline_device_count: int
    connected_device_count: int
    active_device_count: int
    sampling_device_count: int


class FleetReport(BaseModel):
    """A fleet report. A device is *connected* when its latest heartbeat is younger than
    ``connected_window_seconds``; a model is *active* on a connected device when its latest
    inference is in the window, *sampling* when its latest captured sample is."""

    fleet: str
    description: str
    output_location: str
    generated_at: float
    connected_window_seconds: float
    registered_device_count: int
    connected_device_count: int
    agent_versions: list[AgentVersionCount]
    model_stats: list[ModelStat]


def describe_errors(errors: Sequence[Any]) -> str:
    """One line per pydantic/FastAPI validation error: ``field.path: what was wrong``."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
