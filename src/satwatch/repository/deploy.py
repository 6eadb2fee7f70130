"""Deploy an ONNX detector as a new version of a model in the repository.

``deploy_onnx`` checks the model name (``satwatch.repository.names``: one plain folder name,
never a path, not used by another model) and the file (a valid ONNX model that ONNX Runtime
opens) before it writes anything. Then it reads the graph's inputs and outputs, writes
``config.pbtxt`` from the onnx template (and ``configs/cpu.pbtxt``), marks every input but
``input_data`` optional (the detectors' recurrent state: absent means zero state), copies the
file into the next version folder, sets ``version_policy { latest { num_versions: K } }``,
validates the model folder (undoing the deployment when it is invalid) and, given a server
URL, asks that server to (re)load the model and waits until the new version is ready. When
the server cannot load it, Triton keeps serving the versions it had (observed on 2.51), and
the error says so.

Example::

    result = deploy_onnx(Path("build/SMAP_E-1.onnx"), "SMAP_E-1", keep=2)
    result.version   # 1 on the first deployment, then 2, 3...
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from satwatch.exceptions import ModelError, RepositoryError, ServerError
from satwatch.onnx_defaults import add_zero_defaults
from satwatch.paths import repository_dir
from satwatch.repository.config import (
    config_from_template,
    output,
    set_num_versions,
    tensor,
    write_model_configs,
)
from satwatch.repository.names import check_model_name, model_folder
from satwatch.repository.signatures import Signature, onnx_signature
from satwatch.repository.validate import validate_model, version_folders

LOGGER = logging.getLogger(__name__)

MAIN_INPUT = "input_data"
"""The one required input of a detector; every other input is optional state."""

ADMIN_HEADER = "admin-key"
"""Header carrying the admin key of the server's restricted model-repository API."""


@dataclass(frozen=True)
class Deployment:
    """What ``deploy_onnx`` did.

    Attributes:
        model_dir: The model's folder.
        version: The version written.
        config: The config written to ``config.pbtxt``.
        loaded: Whether a server was asked to load it (and did).
    """

    model_dir: Path
    version: int
    config: mc.ModelConfig
    loaded: bool = False


def onnx_model_config(
    signature: Signature,
    name: str,
    *,
    num_versions: int = 2,
    repository: Path | None = None,
    source: str = "the ONNX graph",
) -> mc.ModelConfig:
    """Return the ``config.pbtxt`` of an ONNX detector from its graph's signature.

    Raises:
        ModelError: If the graph has no ``input_data``, a tensor without a shape, or a state
            input with a dynamic axis (a backend could not feed zeros for it).
    """
    names = [spec.name for spec in signature.inputs]
    if MAIN_INPUT not in names:
        raise ModelError(f"{source}: expected an input {MAIN_INPUT!r}, got {names}")
    inputs = []
    for spec in signature.inputs:
        if spec.dims is None:
            raise ModelError(f"{source}: input {spec.name!r} has no shape; expected one")
        optional = spec.name != MAIN_INPUT
        if optional and -1 in spec.dims:
            raise ModelError(
                f"{source}: state input {spec.describe()}: expected static dims, so a request "
                "may leave it out and the backend feed zeros"
            )
        inputs.append(tensor(spec.name, spec.data_type, spec.dims, optional=optional))
    outputs = []
    for spec in signature.outputs:
        if spec.dims is None:
            raise ModelError(f"{source}: output {spec.name!r} has no shape; expected one")
        outputs.append(output(spec.name, spec.data_type, spec.dims))
    config = config_from_template(
        "onnx", repository=repository, name=name, input=inputs, output=outputs
    )
    set_num_versions(config, num_versions)
    return config


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def check_onnx_file(path: Path) -> Path:
    """Return ``path`` if it is a valid ONNX model that ONNX Runtime can open.

    Checked before anything is written or a server is asked to load it: Triton keeps the old
    version when a reload fails, but a broken file left on disk breaks the next start.

    Raises:
        ModelError: Naming the file and what is wrong: missing, a directory, empty, not an
            ONNX protobuf (random bytes, truncated), an invalid graph, or refused by ONNX
            Runtime.
    """
    import onnx  # deferred: only the tools that read model files need it

    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path}: expected an ONNX model file, got a directory")
    if not path.exists():
        raise ModelError(f"{path}: expected an ONNX model file, got no such file")
    if not path.is_file():
        raise ModelError(f"{path}: expected an ONNX model file, got no regular file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: expected an ONNX model, got an empty file")
    model = _load_onnx(path)
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # onnx.checker.ValidationError, and others on odd graphs
        raise ModelError(f"{path}: not a valid ONNX model: {_first_line(error)}") from error
    _check_runtime_opens(path)
    return path


def _load_onnx(path: Path):  # noqa: ANN202 - an onnx.ModelProto
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path), load_external_data=False)
    except DecodeError as error:
        raise ModelError(
            f"{path}: not an ONNX model (a truncated file, or another format): {_first_line(error)}"
        ) from error
    except OSError as error:
        raise ModelError(f"{path}: cannot read the ONNX model: {_first_line(error)}") from error


def _check_runtime_opens(path: Path) -> None:
    import onnxruntime  # deferred: seconds to import, and only deploy needs a session

    try:
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelError(f"{path}: ONNX Runtime cannot load it: {_first_line(error)}") from error


def _version_dir(model_dir: Path, number: int) -> Path:
    version_dir = model_dir / str(number)
    # An existing version folder may be a symlink; never write through one out of the model.
    if version_dir.resolve().parent != model_dir.resolve():
        raise RepositoryError(
            f"{version_dir}: resolves to {version_dir.resolve()}, outside {model_dir}: "
            "expected a version folder inside the model folder"
        )
    return version_dir


def _next_version(model_dir: Path, version: int | None, overwrite: bool) -> int:
    existing = version_folders(model_dir) if model_dir.is_dir() else []
    if version is None:
        return (existing[-1] + 1) if existing else 1
    if version < 1:
        raise RepositoryError(f"{model_dir}: version must be 1 or more, got {version}")
    if version in existing and not overwrite:
        raise RepositoryError(
            f"{model_dir / str(version)} already exists: expected a new version "
            "(leave --version out for the next one, or --force to replace it)"
        )
    return version


def _snapshot(paths: list[Path]) -> dict[Path, bytes | None]:
    return {path: path.read_bytes() if path.exists() else None for path in paths}


def _restore(snapshot: dict[Path, bytes | None]) -> None:
    for path, data in snapshot.items():
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)


def deploy_onnx(
    onnx_path: Path,
    name: str,
    *,
    repository: Path | None = None,
    version: int | None = None,
    keep: int = 2,
    overwrite: bool = False,
    url: str | None = None,
    admin_key: str | None = None,
    timeout: float = 60.0,
) -> Deployment:
    """Put ``onnx_path`` into ``<repository>/onnx/<name>/<version>/model.onnx`` with its config.

    Nothing is written when the name or the file is refused.

    Args:
        onnx_path: The exported ONNX detector.
        name: Model name (``SMAP_E-1``...), matching
            ``satwatch.repository.names.MODEL_NAME_PATTERN``.
        repository: Repository root (default the project's).
        version: Version number; default the next after the highest present.
        keep: Versions Triton serves (``version_policy { latest { num_versions } }``).
        overwrite: Replace an existing version folder given by ``version``.
        url: A running server (``http://host:8000``, ``host:8000`` or ``grpc://host:8001``)
            to ask to load the model; ``None`` only writes files.
        admin_key: Key of the server's restricted model-repository API.
        timeout: Seconds to wait for the new version to be ready on the server.

    Raises:
        ModelError: If the ONNX file is missing, not a valid ONNX model, or does not fit a
            detector's shape rules.
        RepositoryError: If the name is not acceptable, is used by another backend folder,
            ``onnx/<name>/config.pbtxt`` names another model or backend, the version exists,
            or the result does not validate (the deployment is undone then).
        ServerError: If the server refuses or does not get the version ready.
    """
    root = repository_dir(repository)
    model_dir = model_folder(root, "onnx", name)
    signature = onnx_signature(check_onnx_file(Path(onnx_path)))
    config = onnx_model_config(
        signature, name, num_versions=keep, repository=root, source=str(onnx_path)
    )
    number = _next_version(model_dir, version, overwrite)
    version_dir = _version_dir(model_dir, number)
    created = not version_dir.exists()
    snapshot = _snapshot(
        [
            model_dir / "config.pbtxt",
            model_dir / "configs" / "cpu.pbtxt",
            version_dir / "model.onnx",
        ]
    )
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, version_dir / "model.onnx")
    # Every input but input_data is an optional state: give it its zero default in the graph.
    states = [spec.name for spec in signature.inputs if spec.name != MAIN_INPUT]
    add_zero_defaults(version_dir / "model.onnx", states)
    write_model_configs(model_dir, config)
    problems = validate_model(model_dir)
    if problems:
        _restore(snapshot)
        if created:
            shutil.rmtree(version_dir, ignore_errors=True)
        details = "\n".join(f"  {problem}" for problem in problems)
        raise RepositoryError(f"deploying {onnx_path} as {name} v{number} undone:\n{details}")
    LOGGER.info(
        "deployed %s as %s version %d (serving the latest %d)", onnx_path, name, number, keep
    )
    loaded = False
    if url:
        load_on_server(url, name, number, admin_key=admin_key, timeout=timeout)
        loaded = True
    return Deployment(model_dir, number, config, loaded)


def _client(url: str):  # noqa: ANN202 - tritonclient.http or .grpc client
    if url.startswith("grpc://"):
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(url=url.removeprefix("grpc://"))
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=url.split("://", 1)[-1])


def load_on_server(
    url: str, name: str, version: int, *, admin_key: str | None = None, timeout: float = 60.0
) -> None:
    """Ask the server at ``url`` to (re)load ``name`` and wait until ``version`` is ready.

    Triton 2.51 keeps the versions it serves when the reload fails (a broken or missing
    model file): the ``ServerError`` then carries Triton's reason, and the old version answers.

    Raises:
        RepositoryError: If ``name`` is not an acceptable model name.
        ServerError: If the server refuses (no explicit model control, a wrong admin key, a
            model file it cannot load) or the version is not ready within ``timeout``.
    """
    from tritonclient.utils import InferenceServerException

    check_model_name(name)  # it becomes part of the server's URL
    client = _client(url)
    headers = {ADMIN_HEADER: admin_key} if admin_key else None
    try:
        client.load_model(name, headers=headers)
        deadline = time.monotonic() + timeout
        while not client.is_model_ready(name, str(version), headers=headers):
            if time.monotonic() > deadline:
                raise ServerError(
                    f"server {url}: expected {name} version {version} ready within "
                    f"{timeout:.0f} s, got not ready"
                )
            time.sleep(0.2)
    except InferenceServerException as error:
        raise ServerError(_load_failure(client, url, name, headers, error)) from error
    finally:
        client.close()
    LOGGER.info("server %s serves %s version %d", url, name, version)


def _load_failure(client, url: str, name: str, headers: dict | None, error) -> str:  # noqa: ANN001 - a tritonclient client and InferenceServerException
    """Triton's reason for a failed load, and whether the loaded versions still serve."""
    from tritonclient.utils import InferenceServerException

    # A Python-based backend's message ends in its traceback ("At: ..."); the reason is first.
    reason = (error.message() or str(error)).split("\n\nAt:")[0].strip()
    message = f"server {url}: loading {name} failed: {reason}"
    try:
        serving = client.is_model_ready(name, headers=headers)
    except InferenceServerException:
        serving = False
    return message + ("; the versions already loaded keep serving" if serving else "")
