"""``edgefleet server`` and the management commands (``fleet``, ``device``, ``packaging``,
``plan``, ``stage``, ``report``), which drive the REST API through :class:`AdminClient`.

Wire them into the umbrella command with :func:`add_commands`. Every management command takes
``--server`` (``EDGEFLEET_SERVER_URL``) and ``--token`` (``EDGEFLEET_ADMIN_TOKEN``; default: the
``admin-token`` file a local server wrote in ``./edgefleet-server``) and prints JSON.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from edgefleet.fleet.client import AdminClient, ApiError

ServerUrl = Annotated[str, typer.Option(
    "--server", envvar="EDGEFLEET_SERVER_URL", help="Control plane base URL.")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar="EDGEFLEET_ADMIN_TOKEN", show_default=False,
    help="Admin token (default: ./edgefleet-server/admin-token).")]
DEFAULT_SERVER = "http://127.0.0.1:8080"
_LOCAL_TOKEN = Path("edgefleet-server") / "admin-token"


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


@contextmanager
def _client(server: str, token: str | None) -> Iterator[AdminClient]:
    if token is None:
        if not _LOCAL_TOKEN.is_file():
            typer.echo("no admin token: pass --token or set EDGEFLEET_ADMIN_TOKEN (the server "
                       "wrote it to <data-dir>/admin-token at first start)", err=True)
            raise typer.Exit(2)
        token = _LOCAL_TOKEN.read_text().strip()
    client = AdminClient(server, token)
    try:
        yield client
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()


def _run(server: str, token: str | None, call: Callable[[AdminClient], Any]) -> None:
    with _client(server, token) as client:
        result = call(client)
    if result is not None:
        _print(result)


# -- server ---------------------------------------------------------------------------------------

class PlainHelpCommand(TyperCommand):
    """A command whose ``--help`` is click's plain text, whatever the umbrella command's markup
    mode: Markdown would eat ``<data-dir>`` as an HTML tag and rich's option table truncates
    long option names and examples at 80 columns; plain text wraps them instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["rich_markup_mode"] = None
        super().__init__(*args, **kwargs)


#: Wider help (click caps it at the terminal's width).
HELP_SETTINGS: dict[str, Any] = {"max_content_width": 120}


def server(
    data_dir: Annotated[Path, typer.Option(help="SQLite file, object store, keys.")] = Path(
        "edgefleet-server"),
    database_url: Annotated[str | None, typer.Option(
        help="e.g. postgresql+psycopg://postgres@127.0.0.1/edgefleet (default: SQLite).")] = None,
    object_store: Annotated[str | None, typer.Option(
        help="s3://bucket/prefix?endpoint=URL&region=R (default: <data-dir>/objects).")] = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    public_url: Annotated[str | None, typer.Option(
        help="URL devices reach this server at (default: taken from each request).")] = None,
    region: Annotated[str | None, typer.Option(
        help="Region of agent configs and ARNs (default us-east-1).")] = None,
    connected_window_seconds: Annotated[float | None, typer.Option(
        help="Heartbeat age, in seconds, up to which a device counts as connected "
             "(default 600).")] = None,
    server_key_file: Annotated[Path | None, typer.Option(
        help="Key encrypting secrets at rest (default: <data-dir>/server.key).")] = None,
    admin_token_file: Annotated[Path | None, typer.Option(
        help="Where the first start writes the admin token (default <data-dir>/admin-token).")
    ] = None,
    mqtt_url: Annotated[str | None, typer.Option(
        help="MQTT broker notified when a stage starts, mqtt://host:port (default: off).")
    ] = None,
    mqtt_topic_prefix: Annotated[str | None, typer.Option(
        help="Topic prefix of stage notifications (default: edgefleet).")] = None,
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", help="Log one line per request.")] = True,
    log_level: str = "info",
    tls_cert: Annotated[Path | None, typer.Option(
        help="Serve HTTPS with this PEM certificate chain (with --tls-key); agents verify it "
        "against sagemaker_edge_provider_aws_ca_cert_file.")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="The PEM private key of --tls-cert.")] = None,
    capture_location: Annotated[str | None, typer.Option(
        help="Folder or s3://bucket/prefix?endpoint=URL the agents store captured data in, "
             "for the dashboard's captured data and drift pages (default: off).")] = None,
) -> None:
    """Run the fleet control plane (migrates the database and creates keys at first start).

    Every option is also an environment variable EDGEFLEET_SERVER_<OPTION>, e.g.
    EDGEFLEET_SERVER_MQTT_URL.
    """
    _check_tls(tls_cert, tls_key)
    try:
        import uvicorn
    except ImportError:
        typer.echo("error: the control plane's dependencies are not installed; install them "
                   "with: pip install 'edgefleet[server]'", err=True)
        raise typer.Exit(2) from None

    from edgefleet.fleet.bootstrap import prepare
    from edgefleet.fleet.crypto import ServerKey
    from edgefleet.fleet.db.engine import make_engine
    from edgefleet.fleet.settings import ServerSettings

    given = {"data_dir": data_dir.resolve(), "database_url": database_url,
             "object_store": object_store, "public_url": public_url, "region": region,
             "connected_window_seconds": connected_window_seconds,
             "server_key_file": server_key_file, "admin_token_file": admin_token_file,
             "mqtt_url": mqtt_url, "mqtt_topic_prefix": mqtt_topic_prefix,
             "capture_location": capture_location}
    # Workers are separate processes: they read the same settings from the environment.
    for name, value in given.items():
        if value is not None:
            os.environ[f"EDGEFLEET_SERVER_{name.upper()}"] = str(value)
    settings = ServerSettings()
    # The data dir holds the server key and admin token: private to the server's user.
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    first = prepare(engine, ServerKey.load_or_create(settings.resolved_server_key_file()),
                    settings.resolved_admin_token_file(),
                    settings.resolved_operator_credentials_file())
    engine.dispose()
    if first.admin_token_file is not None:
        # Shown once, and only on a terminal: never into a log file or the journal.
        if sys.stderr.isatty():
            token = first.admin_token_file.read_text().strip()
            typer.echo(f"admin token (shown once): {token}", err=True)
        typer.echo(f"admin token created and written to {first.admin_token_file} (mode 0600); "
                   "keep it safe", err=True)
    if first.operator_credentials_file is not None:
        typer.echo(f"operator key of the sagemaker API (boto3) written to "
                   f"{first.operator_credentials_file} (mode 0600; use it with "
                   f"AWS_SHARED_CREDENTIALS_FILE={first.operator_credentials_file})", err=True)
    uvicorn.run("edgefleet.fleet.app:create_app_from_env", factory=True, host=host, port=port,
                workers=workers, access_log=access_log, log_level=log_level,
                log_config=_server_log_config(log_level),
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None)


def _check_tls(cert: Path | None, key: Path | None) -> None:
    """Exit 2 with the reason unless ``cert`` and ``key`` are both absent or form a usable pair
    (checked here, before uvicorn starts, so that the error names the option)."""
    if cert is None and key is None:
        return
    if cert is None or key is None:
        typer.echo("error: --tls-cert and --tls-key go together: give both to serve HTTPS, or "
                   "neither for plain HTTP", err=True)
        raise typer.Exit(2)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        typer.echo(f"error: cannot use --tls-cert {cert} with --tls-key {key}: {error}; give a "
                   f"PEM certificate chain and the PEM private key that belongs to it", err=True)
        raise typer.Exit(2) from None


def _server_log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging config, plus the server's own ``edgefleet`` loggers on standard error
    (uvicorn configures only its own: without this, their INFO lines were dropped)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["edgefleet"] = {"()": "uvicorn.logging.DefaultFormatter",
                                         "fmt": "%(levelprefix)s %(name)s: %(message)s"}
    config["handlers"]["edgefleet"] = {"formatter": "edgefleet", "class": "logging.StreamHandler",
                                       "stream": "ext://sys.stderr"}
    config["loggers"]["edgefleet"] = {"handlers": ["edgefleet"], "level": log_level.upper(),
                                      "propagate": False}
    return config


# -- fleets ---------------------------------------------------------------------------------------

fleet_app = typer.Typer(help="Device fleets.", no_args_is_help=True)


@fleet_app.command("create")
def fleet_create(name: str, output_location: Annotated[str, typer.Option(
                     help="Where agents write captured data, e.g. s3://bucket/prefix.")],
                 description: str = "", server: ServerUrl = DEFAULT_SERVER,
                 token: Token = None) -> None:
    """Create a device fleet."""
    _run(server, token, lambda c: c.create_fleet(name, output_location, description))


@fleet_app.command("list")
def fleet_list(server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """List device fleets."""
    _run(server, token, lambda c: c.list_fleets())


@fleet_app.command("describe")
def fleet_describe(name: str, server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """Describe a device fleet."""
    _run(server, token, lambda c: c.describe_fleet(name))


@fleet_app.command("delete")
def fleet_delete(name: str, server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """Delete an empty device fleet."""
    _run(server, token, lambda c: c.delete_fleet(name))


def report(fleet: str, server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """Fleet report: agent versions and per-model offline/connected/active/sampling counts."""
    _run(server, token, lambda c: c.report(fleet))


# -- devices --------------------------------------------------------------------------------------

device_app = typer.Typer(help="Devices and their credentials.", no_args_is_help=True)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def committable(path: Path) -> bool:
    """Whether ``path`` lies in a git work tree and git does not ignore it (so ``git add .``
    would pick it up). False when git is not installed."""
    git = shutil.which("git")
    if git is None:
        return False
    folder = path.resolve().parent
    try:
        inside = subprocess.run([git, "-C", str(folder), "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True, timeout=10)
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return False
        ignored = subprocess.run([git, "-C", str(folder), "check-ignore", "-q", "--",
                                  path.resolve().name], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return ignored.returncode == 1  # 0: ignored; 128: error


@device_app.command("register")
def device_register(
    name: str,
    fleet: Annotated[str, typer.Option(help="The device fleet.")],
    description: str = "",
    iot_thing_name: str | None = None,
    agent_config: Annotated[Path | None, typer.Option(
        help="Write the device's agent config (with its credentials) here, mode 0600; the "
             "agent keeps its state in <device>-data beside it.")] = None,
    root_certs_dir: Annotated[Path | None, typer.Option(
        help="Write the package-signing root certificate into this folder and point the "
             "agent config at it.")] = None,
    server: ServerUrl = DEFAULT_SERVER, token: Token = None,
) -> None:
    """Register a device; prints its credentials unless --agent-config is given."""
    spec: dict[str, Any] = {"name": name, "fleet": fleet, "description": description,
                            "iot_thing_name": iot_thing_name}
    with _client(server, token) as client:
        if root_certs_dir is not None:
            root_certs_dir.mkdir(parents=True, exist_ok=True)
            (root_certs_dir / "edgefleet-root.pem").write_bytes(client.root_certificate())
            spec["root_certs_path"] = str(root_certs_dir.resolve())
        answer = client.register_device(spec)
    _write_agent_config(name, answer, agent_config)


def _write_agent_config(name: str, answer: dict[str, Any], agent_config: Path | None) -> None:
    """Print a registration answer, or write its agent config to ``agent_config`` (0600)."""
    if agent_config is None:
        _print(answer)
        return
    config = dict(answer["agent_config"])
    # Each device's own state folder, beside its config: two agents started in one folder
    # must not share extracted packages and deployment state.
    config["sagemaker_edge_local_data_root_path"] = str(
        agent_config.resolve().parent / f"{name}-data")
    _write_private(agent_config, json.dumps(config, indent=2).encode() + b"\n")
    typer.echo(f"wrote {agent_config} (mode 0600; it holds the device's secret key)", err=True)
    if committable(agent_config):
        typer.echo(f"warning: {agent_config} is inside a git work tree and not ignored; it holds "
                   "the device's secret key: add it to .gitignore (or write it outside the "
                   "repository) so it is never committed", err=True)
    _print(answer["device"])


@device_app.command("credentials")
def device_credentials(
    name: str,
    agent_config: Annotated[Path | None, typer.Option(
        help="Write the device's agent config (with its new credentials) here, mode 0600.")
    ] = None,
    root_certs_dir: Annotated[Path | None, typer.Option(
        help="Write the package-signing root certificate into this folder and point the "
             "agent config at it.")] = None,
    server: ServerUrl = DEFAULT_SERVER, token: Token = None,
) -> None:
    """New credentials for a device, and its agent config: for devices registered through
    the sagemaker API (which returns no secrets), or to rotate a leaked secret (the old one
    stops working at once)."""
    with _client(server, token) as client:
        root_certs_path = None
        if root_certs_dir is not None:
            root_certs_dir.mkdir(parents=True, exist_ok=True)
            (root_certs_dir / "edgefleet-root.pem").write_bytes(client.root_certificate())
            root_certs_path = str(root_certs_dir.resolve())
        answer = client.issue_credentials(name, root_certs_path)
    _write_agent_config(name, answer, agent_config)


@device_app.command("deregister")
def device_deregister(name: str, server: ServerUrl = DEFAULT_SERVER,
                      token: Token = None) -> None:
    """Deregister a device (its credentials stop working)."""
    _run(server, token, lambda c: c.deregister_device(name))


@device_app.command("describe")
def device_describe(name: str, server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """Describe a device: latest heartbeat, agent metrics, models, deployments."""
    _run(server, token, lambda c: c.describe_device(name))


@device_app.command("list")
def device_list(fleet: str | None = None, after: str | None = None, limit: int = 100,
                server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """List devices by name (page with --after NEXT_AFTER)."""
    _run(server, token, lambda c: c.list_devices(fleet, after, limit))


# -- packaging ------------------------------------------------------------------------------------

packaging_app = typer.Typer(help="Packaging jobs: signed model packages.",
                            no_args_is_help=True)


@packaging_app.command("create")
def packaging_create(
    name: str,
    model_file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="ONNX model.")],
    model_name: Annotated[str, typer.Option(help="Package model name.")],
    model_version: Annotated[str, typer.Option(help="Package model version, e.g. 1.0.")],
    baseline: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="Drift baseline the package carries: a .npy of "
        "training inputs of one model input (first dimension rows), or a baseline.json.")
    ] = None,
    baseline_tensor: Annotated[str | None, typer.Option(
        help="The model input a .npy --baseline is for (default: the model's only input).")
    ] = None,
    server: ServerUrl = DEFAULT_SERVER, token: Token = None,
) -> None:
    """Upload an ONNX model (and its drift baseline); the server packages and signs it."""
    with _client(server, token) as client:
        job = client.create_packaging_job(name, model_name, model_version, model_file,
                                          baseline, baseline_tensor=baseline_tensor)
    _print(job)
    if job["status"] != "COMPLETED":
        raise typer.Exit(1)


@packaging_app.command("describe")
def packaging_describe(name: str, server: ServerUrl = DEFAULT_SERVER,
                       token: Token = None) -> None:
    """Describe a packaging job."""
    _run(server, token, lambda c: c.describe_packaging_job(name))


@packaging_app.command("list")
def packaging_list(server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """List packaging jobs."""
    _run(server, token, lambda c: c.list_packaging_jobs())


# -- plans and stages -----------------------------------------------------------------------------

plan_app = typer.Typer(help="Deployment plans.", no_args_is_help=True)
stage_app = typer.Typer(help="Stages of deployment plans.", no_args_is_help=True)


def _stage_spec(name: str, devices: str | None, percentage: int | None,
                name_contains: str | None, policy: str) -> dict[str, Any]:
    chosen = [(k, v) for k, v in (("SELECTION", devices), ("PERCENTAGE", percentage),
                                  ("NAMECONTAINS", name_contains)) if v is not None]
    if len(chosen) != 1:
        typer.echo("give exactly one of --devices, --percentage, --name-contains", err=True)
        raise typer.Exit(2)
    kind, value = chosen[0]
    field = {"SELECTION": "device_names", "PERCENTAGE": "percentage",
             "NAMECONTAINS": "name_contains"}[kind]
    selected: Any = [d for d in str(value).split(",") if d] if kind == "SELECTION" else value
    return {"name": name, "selection": {"type": kind, field: selected},
            "failure_handling_policy": policy}


Policy = Annotated[str, typer.Option(
    "--failure-handling-policy", help="ROLLBACK_ON_FAILURE or DO_NOTHING.")]


@plan_app.command("create")
def plan_create(
    name: str,
    fleet: Annotated[str, typer.Option(help="The device fleet.")],
    model: Annotated[list[str], typer.Option(
        help="MODEL_HANDLE=PACKAGING_JOB; repeat for several models.")],
    server: ServerUrl = DEFAULT_SERVER, token: Token = None,
) -> None:
    """Create a deployment plan; add stages with `edgefleet plan add-stage`."""
    models = []
    for item in model:
        handle, sep, job = item.partition("=")
        if not sep:
            typer.echo(f"--model {item!r}: write MODEL_HANDLE=PACKAGING_JOB", err=True)
            raise typer.Exit(2)
        models.append({"model_handle": handle, "packaging_job": job})
    _run(server, token, lambda c: c.create_plan({"name": name, "fleet": fleet,
                                                 "models": models}))


@plan_app.command("add-stage")
def plan_add_stage(
    plan: str, stage: str,
    devices: Annotated[str | None, typer.Option(help="SELECTION: comma-separated names.")] = None,
    percentage: Annotated[int | None, typer.Option(help="PERCENTAGE: 1-100.")] = None,
    name_contains: Annotated[str | None, typer.Option(help="NAMECONTAINS: substring.")] = None,
    failure_handling_policy: Policy = "ROLLBACK_ON_FAILURE",
    server: ServerUrl = DEFAULT_SERVER, token: Token = None,
) -> None:
    """Add a stage selecting devices by exactly one of the three ways."""
    spec = _stage_spec(stage, devices, percentage, name_contains, failure_handling_policy)
    _run(server, token, lambda c: c.add_stage(plan, spec))


@plan_app.command("describe")
def plan_describe(name: str, server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """Describe a plan and its stages."""
    _run(server, token, lambda c: c.describe_plan(name))


@plan_app.command("list")
def plan_list(server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """List deployment plans."""
    _run(server, token, lambda c: c.list_plans())


@plan_app.command("delete")
def plan_delete(name: str, server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """Delete a plan (stop its running stage first)."""
    _run(server, token, lambda c: c.delete_plan(name))


@stage_app.command("start")
def stage_start(plan: str, stage: str, server: ServerUrl = DEFAULT_SERVER,
                token: Token = None) -> None:
    """Start a stage: its devices get the deployment."""
    _run(server, token, lambda c: c.stage_action(plan, stage, "start"))


@stage_app.command("stop")
def stage_stop(plan: str, stage: str, server: ServerUrl = DEFAULT_SERVER,
               token: Token = None) -> None:
    """Stop a stage."""
    _run(server, token, lambda c: c.stage_action(plan, stage, "stop"))


@stage_app.command("devices")
def stage_devices(plan: str, stage: str, server: ServerUrl = DEFAULT_SERVER,
                  token: Token = None) -> None:
    """Per-device status of a stage."""
    _run(server, token, lambda c: c.stage_devices(plan, stage))


admin_app = typer.Typer(help="The server's own credentials (run on the server's host).",
                        no_args_is_help=True)


@admin_app.command("rotate-token")
def admin_rotate_token(
    data_dir: Annotated[Path, typer.Option(help="The server's data folder.")] = Path(
        "edgefleet-server"),
    database_url: Annotated[str | None, typer.Option(
        help="The server's database (default: SQLite in --data-dir).")] = None,
    admin_token_file: Annotated[Path | None, typer.Option(
        help="Where to write the new token (default <data-dir>/admin-token).")] = None,
) -> None:
    """Replace the admin token: the new one is written (mode 0600) where the first start wrote
    the old one, and every old token stops working at once, on every running server instance.

    Reads the same EDGEFLEET_SERVER_* variables as `edgefleet server`. The token is never
    printed; give it to the CLI with --token or EDGEFLEET_ADMIN_TOKEN.
    """
    from edgefleet.fleet.bootstrap import rotate_admin_token
    from edgefleet.fleet.db.engine import make_engine
    from edgefleet.fleet.settings import ServerSettings

    given = {"data_dir": data_dir.resolve(), "database_url": database_url,
             "admin_token_file": admin_token_file}
    for name, value in given.items():  # as `server` does: options win over the environment
        if value is not None:
            os.environ[f"EDGEFLEET_SERVER_{name.upper()}"] = str(value)
    settings = ServerSettings()
    if settings.database_url is None and not (settings.data_dir / "edgefleet.db").exists():
        typer.echo(f"error: no server database in {settings.data_dir}; pass the server's "
                   f"--data-dir or --database-url", err=True)
        raise typer.Exit(2)
    engine = make_engine(settings.resolved_database_url())
    try:
        path = settings.resolved_admin_token_file()
        revoked = rotate_admin_token(engine, path)
    except OSError as error:
        typer.echo(f"error: cannot write the new admin token: {error}; the old token still "
                   f"works", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(json.dumps({"admin_token_file": str(path), "revoked_tokens": revoked}))


# -- operator keys --------------------------------------------------------------------------------

operator_key_app = typer.Typer(help="Operator keys of the sagemaker API (boto3 scripts).",
                               no_args_is_help=True)


@operator_key_app.command("create")
def operator_key_create(
    description: str = "",
    out: Annotated[Path | None, typer.Option(
        help="Write the key here in AWS shared-credentials format (profile default), mode "
             "0600, instead of printing it.")] = None,
    server: ServerUrl = DEFAULT_SERVER, token: Token = None,
) -> None:
    """Create an operator key (the secret is shown once)."""
    from edgefleet.fleet import operator_keys, schemas

    with _client(server, token) as client:
        created = client.create_operator_key(description)
    if out is None:
        _print(created)
        return
    operator_keys.write_private(out, operator_keys.credentials_file_text(
        schemas.OperatorKeyCreated.model_validate(created)))
    typer.echo(f"wrote {out} (mode 0600); use it with AWS_SHARED_CREDENTIALS_FILE={out}",
               err=True)
    _print({k: v for k, v in created.items() if k != "secret_access_key"})


@operator_key_app.command("list")
def operator_key_list(server: ServerUrl = DEFAULT_SERVER, token: Token = None) -> None:
    """List operator keys (never their secrets)."""
    _run(server, token, lambda c: c.list_operator_keys())


@operator_key_app.command("revoke")
def operator_key_revoke(access_key_id: str, server: ServerUrl = DEFAULT_SERVER,
                        token: Token = None) -> None:
    """Revoke an operator key: requests it signs are refused from now on."""
    _run(server, token, lambda c: c.revoke_operator_key(access_key_id))


def add_commands(app: typer.Typer) -> None:
    """Add ``server``, ``report`` and the ``fleet``, ``device``, ``packaging``, ``plan``,
    ``stage`` and ``admin`` groups to the umbrella ``edgefleet`` command."""
    app.command("server", cls=PlainHelpCommand, context_settings=HELP_SETTINGS)(server)
    app.command("report")(report)
    app.add_typer(fleet_app, name="fleet")
    app.add_typer(device_app, name="device")
    app.add_typer(packaging_app, name="packaging")
    app.add_typer(plan_app, name="plan")
    app.add_typer(stage_app, name="stage")
    app.add_typer(admin_app, name="admin")
    app.add_typer(operator_key_app, name="operator-key")


def main() -> None:
    """``python -m edgefleet.fleet``: these commands without the umbrella command."""
    app = typer.Typer(help="edgefleet fleet control plane.", no_args_is_help=True)
    add_commands(app)
    app(args=sys.argv[1:], prog_name="edgefleet")
