"""Build a TensorRT plan from an ONNX detector, and its ``tensorrt_plan`` config.

The plan is built with TensorRT's Python API (ONNX parser, one optimisation profile, FP16 /
INT8 flags, an entropy calibrator over normalised telemetry for INT8), or with ``trtexec``
when the Python package is absent but the tool is on ``PATH``. Both need an NVIDIA GPU; where
TensorRT or the GPU is missing, :func:`convert` raises a ``ModelError`` saying which.

The profile covers ``input_data`` ``[T, 25]`` for T in ``min_steps..max_steps`` (tuned for
``opt_steps``); the state inputs have static shapes and get that shape for all three.

Example::

    plan = convert(Path("onnx/SMAP_E-1/1/model.onnx"),
                   Path("tensorrt/SMAP_E-1_trt/1/model.plan"), fp16=True)
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from satwatch.exceptions import ModelError
from satwatch.repository.config import config_from_template, output, tensor, write_config
from satwatch.repository.signatures import Signature, onnx_signature

LOGGER = logging.getLogger(__name__)

MAIN_INPUT = "input_data"


@dataclass(frozen=True)
class BuildOptions:
    """How to build the plan.

    Attributes:
        fp16: Allow FP16 kernels.
        int8: Allow INT8 kernels (needs ``calib``).
        calib: ``.npy`` of normalised telemetry ``(T, 25)`` for INT8 calibration.
        workspace_mb: Builder workspace memory limit.
        min_steps: Fewest time steps per request in the profile.
        opt_steps: Time steps the kernels are tuned for (and calibration batch length).
        max_steps: Most time steps per request in the profile.
    """

    fp16: bool = False
    int8: bool = False
    calib: Path | None = None
    workspace_mb: int = 1024
    min_steps: int = 1
    opt_steps: int = 100
    max_steps: int = 4096

    def check(self) -> None:
        """Raise ``ModelError`` for inconsistent options."""
        if not 1 <= self.min_steps <= self.opt_steps <= self.max_steps:
            raise ModelError(
                "profile steps: expected 1 <= min <= opt <= max, got "
                f"{self.min_steps}, {self.opt_steps}, {self.max_steps}"
            )
        if self.int8 and self.calib is None:
            raise ModelError("--int8: expected calibration data (--calib DATA.npy), got none")
        if self.calib is not None and not Path(self.calib).is_file():
            raise ModelError(
                f"calibration data {self.calib}: expected a .npy file, got no such file"
            )
        if self.workspace_mb < 1:
            raise ModelError(f"workspace: expected at least 1 MB, got {self.workspace_mb}")


def profile_shapes(
    signature: Signature, options: BuildOptions
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Return ``{input: (min, opt, max)}`` shapes of the optimisation profile.

    Raises:
        ModelError: If an input other than the time axis of ``input_data`` is dynamic.
    """
    shapes = {}
    for spec in signature.inputs:
        dims = spec.dims or ()
        if spec.name == MAIN_INPUT:
            if len(dims) != 2 or dims[1] == -1:
                raise ModelError(f"{spec.describe()}: expected [-1, features] for {MAIN_INPUT}")
            features = dims[1]
            shapes[spec.name] = tuple(
                (steps, features)
                for steps in (options.min_steps, options.opt_steps, options.max_steps)
            )
        elif not dims or -1 in dims:
            raise ModelError(f"{spec.describe()}: expected static dims for a state input")
        else:
            shapes[spec.name] = (tuple(dims), tuple(dims), tuple(dims))
    if MAIN_INPUT not in shapes:
        raise ModelError(f"ONNX graph: expected an input {MAIN_INPUT!r}, got {list(shapes)}")
    return shapes


def plan_config(signature: Signature, name: str, repository: Path | None = None) -> mc.ModelConfig:
    """Return the ``tensorrt_plan`` config of a plan built from an ONNX ``signature``."""
    return config_from_template(
        "tensorrt",
        repository=repository,
        name=name,
        input=[
            tensor(s.name, s.data_type, s.dims or [], optional=s.name != MAIN_INPUT)
            for s in signature.inputs
        ],
        output=[output(s.name, s.data_type, s.dims or []) for s in signature.outputs],
    )


def gpu_problem() -> str | None:
    """Return why no NVIDIA GPU is usable here, or ``None`` when one is."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA GPU: the CUDA driver (libcuda.so.1) is not installed"
    if cuda.cuInit(0) != 0:
        return "no NVIDIA GPU: the CUDA driver found no usable device (cuInit failed)"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "no NVIDIA GPU: the CUDA driver reports 0 devices"
    return None


def tensorrt_problem() -> str | None:
    """Return why neither TensorRT's Python API nor ``trtexec`` is usable, or ``None``."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as error:
        if shutil.which("trtexec"):
            return None
        return f"TensorRT is not installed (import tensorrt: {error}) and trtexec is not on PATH"
    return None


def _has_python_api() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def convert(
    onnx_path: Path,
    output_path: Path,
    options: BuildOptions | None = None,
    *,
    name: str | None = None,
    repository: Path | None = None,
) -> Path:
    """Build ``output_path`` (a plan) from ``onnx_path`` and write its config beside it.

    The config goes to ``<model>/config.pbtxt`` when the plan sits in a version folder
    (``<model>/<N>/model.plan``), else to ``config.pbtxt`` in the plan's folder.

    Raises:
        ModelError: If TensorRT or a GPU is missing (the message says which), the options are
            inconsistent, or the build fails.
    """
    options = options or BuildOptions()
    options.check()
    signature = onnx_signature(Path(onnx_path))
    shapes = profile_shapes(signature, options)
    missing = [p for p in (tensorrt_problem(), gpu_problem()) if p]
    if missing:
        raise ModelError(f"cannot build a TensorRT plan here: {'; '.join(missing)}")
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if _has_python_api():
        _build_with_api(Path(onnx_path), output_path, shapes, options)
    else:
        _build_with_trtexec(Path(onnx_path), output_path, shapes, options)
    in_version = output_path.parent.name.isdigit()
    model_dir = output_path.parent.parent if in_version else output_path.parent
    config = plan_config(signature, name or model_dir.name, repository)
    if output_path.name != "model.plan":
        config.default_model_filename = output_path.name
    write_config(config, model_dir / "config.pbtxt")
    LOGGER.info("built %s and its config in %s", output_path, model_dir)
    return output_path


def _build_with_api(
    onnx_path: Path, output_path: Path, shapes: dict, options: BuildOptions
) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT < 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    for name, (low, best, high) in shapes.items():
        profile.set_shape(name, low, best, high)
    config.add_optimization_profile(profile)
    if options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if options.int8:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, options, shapes, output_path)
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"{onnx_path}: TensorRT could not build a plan (see the log above)")
    output_path.write_bytes(bytes(plan))


def calibration_batches(data: np.ndarray, steps: int) -> list[np.ndarray]:
    """Split normalised telemetry ``(T, F)`` into float32 chunks of ``steps`` rows."""
    if data.ndim != 2:
        raise ModelError(f"calibration data: expected (T, features), got shape {data.shape}")
    count = len(data) // steps
    if count == 0:
        raise ModelError(f"calibration data: expected at least {steps} rows, got {len(data)}")
    return [
        np.ascontiguousarray(data[i * steps : (i + 1) * steps], np.float32) for i in range(count)
    ]


def _calibrator(trt, options: BuildOptions, shapes: dict, output_path: Path):  # noqa: ANN001, ANN202
    """An entropy calibrator feeding the calibration chunks (states zero) from GPU memory."""
    import torch  # CUDA memory for the batches; the CPU-only build cannot calibrate

    if not torch.cuda.is_available():
        raise ModelError(
            "INT8 calibration: expected a CUDA build of torch to hold batches, got none"
        )
    batches = calibration_batches(np.load(options.calib), options.opt_steps)
    cache = output_path.with_suffix(".calib")

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.states = {
                name: torch.zeros(best, device="cuda")
                for name, (_, best, _) in shapes.items()
                if name != MAIN_INPUT
            }
            self.current = None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):  # noqa: ANN001, ANN202
            if self.index >= len(batches):
                return None
            self.current = torch.from_numpy(batches[self.index]).cuda()
            self.index += 1
            tensors = {MAIN_INPUT: self.current, **self.states}
            return [int(tensors[name].data_ptr()) for name in names]

        def read_calibration_cache(self):  # noqa: ANN202
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data) -> None:  # noqa: ANN001
            cache.write_bytes(bytes(data))

    return Calibrator()


def _shape_arg(shapes: dict, which: int) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, dims[which]))}" for name, dims in shapes.items())


def _build_with_trtexec(
    onnx_path: Path, output_path: Path, shapes: dict, options: BuildOptions
) -> None:
    if options.int8:
        raise ModelError(
            "INT8 from calibration data needs TensorRT's Python API; trtexec only reads a "
            "calibration cache: install the tensorrt package"
        )
    command = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={output_path}",
        f"--minShapes={_shape_arg(shapes, 0)}",
        f"--optShapes={_shape_arg(shapes, 1)}",
        f"--maxShapes={_shape_arg(shapes, 2)}",
        f"--memPoolSize=workspace:{options.workspace_mb}M",
    ]
    if options.fp16:
        command.append("--fp16")
    LOGGER.info("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not output_path.exists():
        tail = "\n".join(result.stdout.splitlines()[-10:] + result.stderr.splitlines()[-10:])
        raise ModelError(f"trtexec failed with code {result.returncode}:\n{tail}")
