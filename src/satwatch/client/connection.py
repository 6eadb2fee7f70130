"""One way to talk to the server, over HTTP or gRPC, from any number of threads.

:class:`Connection` hides the two ``tritonclient`` flavours behind one ``infer`` that takes and
returns numpy arrays by tensor name, keeps one client per thread (the clients are not meant to
be shared between threads), and turns every failure into a :class:`ClientError` line
(:mod:`satwatch.client.errors`).

Example::

    connection = Connection("grpc", "127.0.0.1:8001")
    connection.check_ready(["custom_logic"])
    out = connection.infer("custom_logic", {"channel_id": ids, "raw_input": raw}, ["decision"])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from satwatch.client import errors
from satwatch.exceptions import ClientError

LOGGER = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http")
DEFAULT_URLS = {"http": "127.0.0.1:8000", "grpc": "127.0.0.1:8001"}
# The restricted repository index wants the admin key under these header names.
ADMIN_HEADERS = {"http": "admin-key", "grpc": "triton-grpc-protocol-admin-key"}
_DTYPES = {np.dtype(np.float32): "FP32", np.dtype(np.bool_): "BOOL", np.dtype(object): "BYTES"}


def normalise_url(url: str | None, protocol: str) -> str:
    """``host:port`` as ``tritonclient`` takes it (a scheme or trailing slash is dropped).

    Raises:
        ClientError: For an unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise ClientError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if not url:
        return DEFAULT_URLS[protocol]
    return url.split("://", 1)[-1].rstrip("/")


class Connection:
    """Requests to one Triton server over one protocol (thread-safe).

    Args:
        protocol: ``grpc`` or ``http``.
        url: ``host:port`` (default: 127.0.0.1 and Triton's port for the protocol).
        admin_key: Key for the restricted repository index (only to explain a model that is
            not READY).
        timeout: Seconds per request.
        retries: Times a request is sent again when nothing answered it (a replica died, a
            proxy found no replica): it carries its stream's state, so the answer is the same.
        retry_wait: Seconds before the first retry (doubled for each next one).
    """

    def __init__(
        self,
        protocol: str = "grpc",
        url: str | None = None,
        admin_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        retry_wait: float = 0.25,
    ) -> None:
        self.protocol = protocol
        self.url = normalise_url(url, protocol)
        self.admin_key = admin_key
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()

    @property
    def client(self):  # noqa: ANN201 - either tritonclient flavour
        """This thread's ``InferenceServerClient``."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "http":
                client = httpclient.InferenceServerClient(
                    self.url, connection_timeout=self.timeout, network_timeout=self.timeout
                )
            else:
                client = grpcclient.InferenceServerClient(self.url)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every thread's client (open HTTP connections delay a server's exit)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                LOGGER.debug("closing a client failed", exc_info=True)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_live(self) -> None:
        """Raise a :class:`ClientError` saying how to start the server when none answers."""
        try:
            live = self.client.is_server_live()
        except Exception as error:  # noqa: BLE001 - every failure here means "no server"
            raise errors.server_unreachable(self.url, self.protocol, _short(error)) from None
        if not live:
            raise errors.server_unreachable(self.url, self.protocol, "not live")

    def check_ready(self, models: Iterable[str], version: str = "") -> None:
        """Check the server answers and each model is READY, or raise one clear ClientError.

        ``version`` applies to every model named (empty: the server's choice).
        """
        self.check_live()
        for model in models:
            try:
                ready = self.client.is_model_ready(model, version)
            except Exception as error:  # noqa: BLE001
                raise errors.translate(error, model, self.url, self.protocol) from None
            if not ready:
                raise self.not_ready(model, version)

    def not_ready(self, model: str, version: str = "") -> ClientError:
        """The error for a model that does not serve, with its state when it can be read."""
        state, reason = self.model_state(model, version)
        return errors.model_not_ready(model, version, self.url, state, reason)

    def model_state(self, model: str, version: str = "") -> tuple[str | None, str]:
        """``(state, reason)`` from the repository index; ``ABSENT`` when it does not list the
        model; ``(None, "")`` when the index cannot be read (restricted without a key)."""
        headers = {ADMIN_HEADERS[self.protocol]: self.admin_key} if self.admin_key else None
        try:
            index = self.client.get_model_repository_index(headers=headers)
        except Exception:  # noqa: BLE001 - the state is a courtesy; the caller still fails
            LOGGER.debug("repository index unreadable", exc_info=True)
            return None, ""
        rows = index if isinstance(index, list) else _grpc_rows(index)
        rows = [r for r in rows if r.get("name") == model]
        if version:
            rows = [r for r in rows if str(r.get("version", "")) == version] or rows
        if not rows:
            return "ABSENT", ""
        not_ready = [r for r in rows if r.get("state") != "READY"] or rows
        row = not_ready[0]
        return row.get("state") or "UNAVAILABLE", row.get("reason", "")

    def tensor_names(self, model: str, version: str = "") -> tuple[list[str], list[str]]:
        """``(input names, output names)`` from the model's metadata."""
        try:
            if self.protocol == "http":
                meta = self.client.get_model_metadata(model, version)
            else:
                meta = self.client.get_model_metadata(model, version, as_json=True)
        except Exception as error:  # noqa: BLE001
            raise self._explain(error, model, version) from None
        return (
            [t["name"] for t in meta.get("inputs", [])],
            [t["name"] for t in meta.get("outputs", [])],
        )

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray | None],
        outputs: Sequence[str],
        version: str = "",
    ) -> dict[str, np.ndarray]:
        """Run one request; ``None`` inputs are left out (optional inputs).

        Raises:
            ClientError: With one line saying what went wrong and, where it can, what to do.
        """
        module = httpclient if self.protocol == "http" else grpcclient
        tensors = []
        for name, array in inputs.items():
            if array is None:
                continue
            array = np.ascontiguousarray(array)
            item = module.InferInput(name, list(array.shape), _DTYPES[array.dtype])
            item.set_data_from_numpy(array)
            tensors.append(item)
        wanted = [module.InferRequestedOutput(name) for name in outputs]
        for attempt in range(self.retries + 1):
            try:
                result = self.client.infer(model, tensors, model_version=version, outputs=wanted)
                break
            except Exception as error:  # noqa: BLE001 - every failure becomes one ClientError
                if attempt == self.retries or not errors.is_transient(error):
                    raise self._explain(error, model, version) from None
                LOGGER.info("%s on %s: %s; sending it again", model, self.url, error)
                time.sleep(self.retry_wait * 2**attempt)
        return {name: result.as_numpy(name) for name in outputs}

    def _explain(self, error: BaseException, model: str, version: str) -> ClientError:
        translated = errors.translate(error, model, self.url, self.protocol)
        if "unknown channel" in str(translated) or errors.is_unreachable(error):
            return translated
        text = str(error).lower()
        missing = any(m in text for m in ("not found", "not ready", "unavailable", "no available"))
        if not missing:
            return translated
        # custom_logic names the BLS step that failed: that model is the one not serving.
        step = errors.failed_step(error)
        name, which = (step, "") if step is not None else (model, version)
        state, reason = self.model_state(name, which)
        if state == "READY":
            return translated
        return errors.model_not_ready(name, which, self.url, state, reason)


def _grpc_rows(index) -> list[dict]:  # noqa: ANN001 - a protobuf message
    return [
        {"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}
        for m in index.models
    ]


def _short(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:160]
