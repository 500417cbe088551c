"""``edgefleet package ...`` and ``edgefleet keys ...``: the command-line face of this package.

Expected errors (a bad name, a missing file, a tampered package) print ``error: <what was wrong
and what to do>`` on stderr and exit with status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgefleet.drift import DEFAULT_BINS, Baseline
from edgefleet.errors import EdgefleetError, InvalidArgument, NotFound
from edgefleet.package.archive import extract_archive
from edgefleet.package.build import baseline_from_file, build_package
from edgefleet.package.keys import init_keys
from edgefleet.package.loader import (
    ARCHIVE_SUFFIXES,
    open_package,
    read_baseline,
    read_unverified,
)
from edgefleet.package.manifest import Manifest
from edgefleet.package.signing import Signature

# Markdown mode joins docstring lines into paragraphs; locals stay out of tracebacks (keys).
package_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", pretty_exceptions_show_locals=False)
keys_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", pretty_exceptions_show_locals=False)


@package_app.callback()
def _package() -> None:
    """Build, verify and inspect signed model packages.

    A package is a flat .tar.gz (or its extracted folder) holding model.onnx, a JSON manifest
    (sagemaker_edge_manifest), a detached signature (sagemaker_edge_signature) and, optionally,
    baseline.json, the drift baseline of an input; see docs/package-format.md. The agent's
    LoadModel takes the folder or the archive.
    """


@keys_app.callback()
def _keys() -> None:
    """Make keys and certificates for signing packages."""


@contextmanager
def _errors_to_exit() -> Iterator[None]:
    """Turn expected errors into ``error: ...`` on stderr and exit status 1, no traceback."""
    try:
        yield
    except EdgefleetError as error:
        _fail(error.message)
    except OSError as error:
        _fail(f"{error.filename}: {error.strerror}" if error.filename else str(error))


def _fail(message: str) -> None:
    Console(stderr=True).print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(1)


@package_app.command()
def build(
    model: Annotated[Path, typer.Argument(help="The ONNX model file to package.")],
    name: Annotated[str, typer.Option(
        "--name", "-n", help="Model name: letters, digits and hyphens between them "
        "(the agent API's alias rule, e.g. wind-power).")],
    version: Annotated[str, typer.Option(
        "--version", "-V", help="Model version: a letter or digit, then up to 63 letters, "
        "digits, '.', '_' or '-' (e.g. 1.4.0).")],
    key: Annotated[Path, typer.Option(
        help="PEM private key that signs the package (ECDSA P-256 or Ed25519, unencrypted), "
        "e.g. edgefleet-keys/signing.key from `edgefleet keys init`.")],
    cert: Annotated[Path, typer.Option(
        help="PEM certificate of --key, followed by intermediate CA certificates if any.")],
    out_dir: Annotated[Path, typer.Option(
        "--out-dir", "-o", help="Folder the archive is written to.")] = Path("."),
    baseline: Annotated[Path | None, typer.Option(
        help="Drift baseline to package: a .npy of training inputs of one model input (first "
        "dimension rows, at least 100), or a ready baseline.json.")] = None,
    baseline_tensor: Annotated[str | None, typer.Option(
        help="The model input the --baseline training inputs are for (default: the model's "
        "only input).")] = None,
    baseline_bins: Annotated[int, typer.Option(
        help="Quantile bins per feature of a .npy --baseline (2 to 100).")] = DEFAULT_BINS,
) -> None:
    """Package and sign an ONNX model as OUT_DIR/NAME-VERSION.tar.gz.

    The model is loaded once with ONNX Runtime to record its input and output tensors (twice
    when a .npy --baseline needs it to find the model's only input). With --baseline the
    package carries baseline.json, the input drift baseline, covered by the signature.
    """
    with _errors_to_exit():
        if baseline is None and baseline_tensor is not None:
            raise InvalidArgument("--baseline-tensor needs --baseline, the training inputs")
        made = (None if baseline is None else
                baseline_from_file(baseline, model, tensor=baseline_tensor, bins=baseline_bins))
        archive = build_package(model, name=name, version=version, key_path=key,
                                cert_path=cert, out_dir=out_dir, baseline=made)
    Console().print(Text.assemble("wrote ", (str(archive), "bold")))


@package_app.command()
def verify(
    path: Annotated[Path, typer.Argument(help="Package folder or .tar.gz archive.")],
    root_certs: Annotated[Path, typer.Option(
        "--root-certs", help="Folder of trusted PEM root certificates (what the agent's "
        "sagemaker_edge_core_root_certs_path names).")],
) -> None:
    """Check a package as the agent does before loading it.

    Checks that the archive is safe to extract, that the signature matches the manifest, that
    the signing certificate chains to one of the root certificates and is valid now, and that
    every file matches its SHA-256 digest. Exits with status 1 and says why when a check fails.
    """
    with _errors_to_exit(), tempfile.TemporaryDirectory(prefix="edgefleet-verify-") as scratch:
        opened = open_package(path, extract_root=Path(scratch), root_certs_path=root_certs)
    count = len(opened.manifest.files) if opened.manifest else 0
    Console().print(Text.assemble(
        ("OK ", "bold green"), f"{opened.model_name} {opened.model_version}: signed by "
        f"{opened.signer}; {count} file{'s match' if count != 1 else ' matches'} the manifest"))


@package_app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="Package folder or .tar.gz archive.")],
) -> None:
    """Show a package's manifest: name, version, framework, tensors, files, signer and drift
    baseline.

    Nothing is verified here (use `edgefleet package verify`); an archive is still extracted
    with the same safety checks, into a temporary folder.
    """
    with _errors_to_exit(), tempfile.TemporaryDirectory(prefix="edgefleet-inspect-") as scratch:
        if not path.exists():
            raise NotFound(f"no package at {path}")
        directory = path
        if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
            directory = Path(scratch)
            extract_archive(path, directory)
        manifest, signature = read_unverified(directory)
        baseline = read_baseline(directory)
    _print_manifest(manifest, signature, baseline)


def _print_manifest(manifest: Manifest, signature: Signature | None,
                    baseline: Baseline | None) -> None:
    console = Console()
    summary = Table.grid(padding=(0, 2))
    summary.add_row("name", manifest.model_name)
    summary.add_row("version", manifest.model_version)
    summary.add_row("framework", manifest.framework)
    summary.add_row("model file", manifest.model_file)
    if signature is None:
        summary.add_row("signer", Text("unsigned", style="yellow"))
    else:
        leaf = signature.chain[0]
        summary.add_row("signer", f"{signature.signer} ({signature.algorithm})")
        summary.add_row("issuer", leaf.issuer.rfc4514_string())
        summary.add_row("valid", f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                                 f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if baseline is None:
        summary.add_row("baseline", Text("none", style="dim"))
    else:
        summary.add_row("baseline", f"{manifest.baseline}: tensor {baseline.tensor}, "
                                    f"{len(baseline.features)} features, {baseline.rows} rows")
    console.print(summary)
    tensors = Table(title="Tensors (-1: dynamic dimension)", title_justify="left")
    for column in ("", "name", "dtype", "shape"):
        tensors.add_column(column)
    for kind, specs in (("input", manifest.inputs), ("output", manifest.outputs)):
        for spec in specs:
            tensors.add_row(kind, spec.name, spec.dtype_name,
                            Text(f"[{', '.join(map(str, spec.shape))}]"))
    console.print(tensors)
    files = Table(title="Files", title_justify="left")
    files.add_column("name")
    files.add_column("bytes", justify="right")
    files.add_column("sha256")
    for file in manifest.files:
        files.add_row(file.name, str(file.size), file.sha256)
    console.print(files)
    if signature is not None:
        console.print("Not verified here: run `edgefleet package verify PATH --root-certs DIR`.",
                      style="dim", markup=False)


@keys_app.command("init")
def init(
    directory: Annotated[Path, typer.Argument(
        help="Folder for the keys and certificates (created if missing).")
    ] = Path("edgefleet-keys"),
    force: Annotated[bool, typer.Option(
        "--force", help="Replace existing keys (packages signed with them stop verifying on "
        "devices that trust only the new root).")] = False,
) -> None:
    """Make a root CA and a package-signing certificate issued by it, for trying things out.

    Private keys are written unencrypted with mode 0600. For production, issue signing
    certificates from your own PKI and keep the root key offline.
    """
    with _errors_to_exit():
        files = init_keys(directory, force=force)
    console = Console()
    console.print(Text.assemble("Wrote a root CA and a package-signing certificate to ",
                                (str(directory), "bold"), ":"))
    listing = Table.grid(padding=(0, 2))
    listing.add_row("  root certificate", str(files.root_cert))
    listing.add_row("  root key (secret)", str(files.root_key))
    listing.add_row("  signing certificate", str(files.signing_cert))
    listing.add_row("  signing key (secret)", str(files.signing_key))
    console.print(listing)
    console.print("Devices trust packages signed under this root when their agent config has:",
                  markup=False)
    console.print(
        f'  "sagemaker_edge_core_root_certs_path": "{files.root_certs_dir.resolve()}"',
        markup=False, soft_wrap=True)
    console.print("Sign a package with:", markup=False)
    console.print(
        f"  edgefleet package build model.onnx --name my-model --version 1 "
        f"--key {files.signing_key} --cert {files.signing_cert}", markup=False, soft_wrap=True)
