"""Start-up time and throughput of the embedded Triton against ONNX Runtime in-process.

Serves the sample repository (``satwatch.server.sample_repository``), reports the time from
process start to READY, then drives its ONNX model ``sample_affine`` (dynamic batching) with
N concurrent gRPC clients and compares with the same ``model.onnx`` in an ONNX Runtime
session in this process (one thread, and N threads sharing the session). Not a test.

    .venv/bin/python benchmarks/serve_throughput.py --clients 16 --seconds 10
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

from satwatch.server.embedded import ServerPorts, start_embedded_server
from satwatch.server.sample_repository import FEATURES, build_sample_repository

MODEL = "sample_affine"


def _drive(clients: int, seconds: float, make_call: Callable[[], Callable[[], None]]) -> dict:
    """Run ``clients`` threads calling for ``seconds``; return throughput and latencies."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = threading.Event()

    def worker(index: int) -> None:
        call = make_call()
        while not stop.is_set():
            started = time.perf_counter()
            call()
            latencies[index].append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = np.array([value for values in latencies for value in values]) * 1000
    return {
        "requests": len(merged),
        "per_second": len(merged) / elapsed,
        "p50": float(np.percentile(merged, 50)),
        "p95": float(np.percentile(merged, 95)),
        "p99": float(np.percentile(merged, 99)),
    }


def _grpc_call(url: str, rows: int) -> Callable[[], Callable[[], None]]:
    x = np.random.default_rng(0).normal(size=(rows, FEATURES)).astype(np.float32)

    def make() -> Callable[[], None]:
        client = grpcclient.InferenceServerClient(url=url)
        tensor = grpcclient.InferInput("input_data", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return lambda: client.infer(MODEL, [tensor]).as_numpy("output")

    return make


def _ort_call(session: ort.InferenceSession, rows: int) -> Callable[[], Callable[[], None]]:
    x = np.random.default_rng(0).normal(size=(rows, FEATURES)).astype(np.float32)
    return lambda: lambda: session.run(["output"], {"input_data": x})


def _line(name: str, figures: dict) -> str:
    return (
        f"{name:<40} {figures['per_second']:>9.0f} req/s   p50 {figures['p50']:6.2f} ms   "
        f"p95 {figures['p95']:6.2f} ms   p99 {figures['p99']:6.2f} ms   "
        f"({figures['requests']} requests)"
    )


def main() -> None:
    """Parse the options, measure, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="satwatch-bench-") as folder:
        root = build_sample_repository(Path(folder) / "repository")
        running = start_embedded_server(
            root,
            ports=ServerPorts.free(),
            log_file=Path(folder) / "triton.log",
            admin_key=secrets.token_urlsafe(16),
        )
        ready = sum(row.ready for row in running.table)
        print(f"start-up to READY: {running.startup_seconds:.1f} s ({ready} models)")
        try:
            served = _drive(
                options.clients, options.seconds, _grpc_call(running.grpc_url, options.rows)
            )
        finally:
            running.server.stop()
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = 1  # as the served model's config says
        session = ort.InferenceSession(
            str(root / "onnx" / MODEL / "1" / "model.onnx"),
            session_options,
            providers=["CPUExecutionProvider"],
        )
        single = _drive(1, options.seconds, _ort_call(session, options.rows))
        shared = _drive(options.clients, options.seconds, _ort_call(session, options.rows))

    print(_line(f"Triton gRPC, {options.clients} clients", served))
    print(_line("ONNX Runtime in-process, 1 thread", single))
    print(_line(f"ONNX Runtime in-process, {options.clients} threads", shared))
    print(
        f"ratio served / in-process: {served['per_second'] / single['per_second']:.3f} "
        f"(1 thread), {served['per_second'] / shared['per_second']:.3f} ({options.clients} threads)"
    )


if __name__ == "__main__":
    main()
