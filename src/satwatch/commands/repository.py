"""``satwatch build``, ``validate``, ``deploy-onnx``, ``convert-tensorrt``, ``convert-torchscript``.

The same commands run as the repository's scripts (``triton-repository/scripts/``), which
call these functions through ``typer.run``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from satwatch.commands._console import (
    CONSOLE,
    DATA_OPTION,
    ERRORS,
    SPACECRAFT_OPTION,
    exits_cleanly,
    fail,
)
from satwatch.exceptions import SatwatchError
from satwatch.paths import artifacts_dir, data_dir, repository_dir

LOGGER = logging.getLogger(__name__)


REPOSITORY_OPTION = typer.Option(
    None,
    "--repository",
    "-r",
    help="Model repository root (default $SATWATCH_REPOSITORY or ./triton-repository).",
)


@exits_cleanly
def validate_command(
    repository: Path | None = REPOSITORY_OPTION,
    live: bool = typer.Option(
        False,
        "--live",
        help="When the static checks pass, also serve the repository with the embedded Triton "
        "server and check that every model is READY (takes the models' load time).",
    ),
    timeout: float = typer.Option(180.0, help="Seconds to wait for the server with --live."),
    production: bool = typer.Option(
        False,
        "--production",
        help="Also check each production config.pbtxt against the rules of NVIDIA's native "
        "backends that the embedded server does not enforce (optional inputs, ONNX state "
        "defaults, KIND_GPU instance groups, TensorRT plans against their ONNX models, "
        "inert dynamic batching). Errors exit 1; warnings are printed.",
    ),
) -> None:
    """Check the model repository: configs, model files, tensors, ensembles, unique names.

    Parses every config.pbtxt and configs/*.pbtxt with Triton's ModelConfig schema, checks each
    version's model file exists and that ONNX / TorchScript tensors match the config, that
    ensemble steps name existing models and every tensor is produced before it is consumed,
    and that model names are unique across the backend folders. Prints each problem with its
    file; exits 1 when there is any.
    """
    from satwatch.repository.validate import live_problems, validate_repository

    root = repository_dir(repository)
    problems = validate_repository(root)
    if live and not problems:
        with CONSOLE.status("serving the repository with the embedded Triton server..."):
            problems = live_problems(root, timeout=timeout)
    if production:
        problems += _production_problems(root)
    for problem in problems:
        ERRORS.print(f"[red]{escape(str(problem))}[/]", highlight=False, soft_wrap=True)
    if problems:
        ERRORS.print(f"[bold red]{len(problems)} problem(s)[/] in {root}")
        raise typer.Exit(code=1)
    checked = " (every model READY)" if live else ""
    checked += " (and the native backends' rules)" if production else ""
    CONSOLE.print(f"[green]{root}: valid[/]{checked}")


def _production_problems(root: Path) -> list:
    """The native backends' errors (returned) and warnings (printed, in yellow)."""
    from satwatch.repository.production import production_findings

    errors = []
    for finding in production_findings(root):
        if finding.severity == "error":
            errors.append(finding.problem)
        else:
            ERRORS.print(f"[yellow]warning: {escape(str(finding.problem))}[/]", highlight=False)
    return errors


@exits_cleanly
def deploy_onnx_command(
    onnx: Path = typer.Option(..., "--onnx", help="The exported ONNX detector."),
    name: str = typer.Option(
        ...,
        "--name",
        help="Model name, e.g. SMAP_E-1: 1-128 letters, digits, '_', '.' or '-', starting with "
        "a letter or digit, no '..'; not used in another backend folder.",
    ),
    repository: Path | None = REPOSITORY_OPTION,
    version: int | None = typer.Option(
        None, "--version", help="Version number (default: the next after the highest present)."
    ),
    keep: int = typer.Option(
        2, "--keep", help="Versions served (version_policy { latest { num_versions } })."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing --version folder."),
    url: str | None = typer.Option(
        None,
        "--url",
        help="Running server to load the model on: http://host:8000, host:8000 or grpc://host:8001.",
    ),
    admin_key: str | None = typer.Option(
        None, "--admin-key", envvar="SATWATCH_ADMIN_KEY", help="Key of the server's load API."
    ),
) -> None:
    """Deploy an ONNX detector as the next version of onnx/<NAME>/.

    Checks the name and the file first (a valid ONNX model that ONNX Runtime opens; nothing is
    written otherwise). Reads the graph's inputs and outputs, writes config.pbtxt from the onnx
    template (and the CPU variant configs/cpu.pbtxt); every input but input_data is optional
    state. Copies the file to the version folder, validates (undoing it when invalid), and with
    --url asks the server to load the new version (a failed load leaves the old one serving).
    """
    from satwatch.repository.deploy import deploy_onnx

    result = deploy_onnx(
        onnx,
        name,
        repository=repository,
        version=version,
        keep=keep,
        overwrite=force,
        url=url,
        admin_key=admin_key,
    )
    where = result.model_dir / str(result.version)
    CONSOLE.print(f"[green]deployed[/] {name} version {result.version} -> {where}")
    if result.loaded:
        CONSOLE.print(f"[green]loaded[/] on {url}: version {result.version} is ready")


@exits_cleanly
def convert_tensorrt_command(
    onnx: Path = typer.Option(..., "--onnx", help="The ONNX detector to convert."),
    output: Path = typer.Option(
        ..., "--output", help="Plan to write, e.g. tensorrt/SMAP_E-1_trt/1/model.plan."
    ),
    fp16: bool = typer.Option(False, "--fp16", help="Allow FP16 kernels."),
    int8: bool = typer.Option(False, "--int8", help="Allow INT8 kernels (needs --calib)."),
    calib: Path | None = typer.Option(
        None, "--calib", help="Normalised telemetry (T, 25) as .npy for INT8 calibration."
    ),
    workspace: int = typer.Option(1024, "--workspace", help="Builder workspace in MB."),
    min_steps: int = typer.Option(1, "--min-steps", "--min", help="Fewest time steps."),
    opt_steps: int = typer.Option(100, "--opt-steps", "--opt", help="Time steps tuned for."),
    max_steps: int = typer.Option(4096, "--max-steps", "--max", help="Most time steps."),
) -> None:
    """Build a TensorRT plan from an ONNX detector and write its tensorrt_plan config.

    Uses TensorRT's Python API (or trtexec when only that is installed) with one optimisation
    profile over input_data's time axis. Needs TensorRT and an NVIDIA GPU; without them it
    exits 1 saying which is missing. The model is named after its folder (the one above the
    version folder), checked as deploy-onnx checks --name; a folder of another model is refused.
    """
    from satwatch.repository.deploy import check_onnx_file
    from satwatch.repository.names import check_model_target
    from satwatch.repository.tensorrt import BuildOptions, convert

    model_dir = _model_dir_of(output) or output.absolute().parent
    check_model_target(model_dir, model_dir.name, "tensorrt")
    check_onnx_file(onnx)
    options = BuildOptions(fp16, int8, calib, workspace, min_steps, opt_steps, max_steps)
    plan = convert(onnx, output, options, name=model_dir.name)
    CONSOLE.print(f"[green]built[/] {plan}")


@exits_cleanly
def convert_torchscript_command(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="TranAD artifact folder (model.pt + card.json).", exists=True
    ),
    output: Path = typer.Option(
        ..., "--output", help="TorchScript file to write, e.g. pytorch/tranad_sat1_core/1/model.pt."
    ),
) -> None:
    """Convert a trained TranAD checkpoint to TorchScript for the PyTorch backend.

    When --output lies in a version folder (<model>/<N>/model.pt), the model's name is checked
    as deploy-onnx checks --name, and a folder of another model is refused.
    """
    from satwatch.export.torchscript import convert
    from satwatch.repository.names import check_model_target

    model_dir = _model_dir_of(output)
    if model_dir is not None:
        check_model_target(model_dir, model_dir.name, "pytorch")
    written = convert(checkpoint, output)
    CONSOLE.print(f"[green]wrote[/] {written or output}")


def _model_dir_of(output: Path) -> Path | None:
    """The model folder of ``<model>/<N>/<file>``, or ``None`` outside a version folder."""
    # absolute(): a bare "model.plan" still has a named folder above it.
    version_dir = output.absolute().parent
    return version_dir.parent if version_dir.name.isdigit() else None


def build_command(
    artifacts: Path | None = typer.Option(
        None,
        "--artifacts",
        help="Trained artifacts root (default $SATWATCH_ARTIFACTS or ./artifacts).",
    ),
    repository: Path | None = typer.Option(
        None,
        "--repository",
        "-r",
        help="Repository to fill (default $SATWATCH_REPOSITORY or ./triton-repository).",
    ),
    data: Path | None = DATA_OPTION,
    channels: str = typer.Option(
        "seed", "--channels", help="'seed' (27 SMAP channels), 'all', or a list such as 'E-1,A-1'."
    ),
    profile: str = typer.Option(
        "quick", "--profile", help="Training profile for missing artifacts: quick or full."
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Training worker processes (one core each)."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
    no_train: bool = typer.Option(
        False, "--no-train", help="Fail instead of training when an artifact is missing."
    ),
    spacecraft: str = SPACECRAFT_OPTION,
) -> None:
    """Fill the Triton model repository from the trained detectors.

    Trains missing detectors (OmniAnomaly per channel, one TranAD), exports them (ONNX,
    TorchScript) with production and CPU configs, writes the Python models' statistics,
    thresholds and channel catalog, rebuilds the ensembles and validates the result.
    """
    from satwatch.repository.build import build_repository  # torch: only when building

    root = repository_dir(repository)
    try:
        with Progress(
            TextColumn("{task.description:<48}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=CONSOLE,
        ) as bar:
            task = bar.add_task("build", total=1)

            def on_progress(description: str, completed: int, total: int) -> None:
                bar.update(task, description=description, completed=completed, total=total)

            report = build_repository(
                artifacts_dir(artifacts),
                root,
                data_dir(data),
                channels=channels,
                train_if_missing=not no_train,
                profile=profile,
                jobs=jobs,
                seed=seed,
                spacecraft=spacecraft,
                progress=on_progress,
            )
    except SatwatchError as error:
        raise fail(error) from error
    table = Table(title=f"built {root}")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for name, seconds in report.seconds.items():
        table.add_row(name, f"{seconds:.2f}")
    CONSOLE.print(table)
    trained = ", ".join(report.trained) or "none"
    CONSOLE.print(f"trained: {trained}; size {report.size_bytes / 1e6:.1f} MB")
    for problem in report.problems:
        ERRORS.print(f"[bold red]invalid:[/] {problem}", highlight=False)
    if report.problems:
        raise typer.Exit(code=1)


COMMANDS = {
    "build": build_command,
    "validate": validate_command,
    "deploy-onnx": deploy_onnx_command,
    "convert-tensorrt": convert_tensorrt_command,
    "convert-torchscript": convert_torchscript_command,
}


def register(app: typer.Typer) -> None:
    """Add the repository commands to the root ``satwatch`` app."""
    for name, command in COMMANDS.items():
        app.command(name)(command)
