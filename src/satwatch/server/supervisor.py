"""Keep every model answering: find a Python backend stub that died and reload its model.

Each model of the embedded server runs in a ``triton_python_backend_stub`` process. When one
dies (a crash, the OOM killer, ``kill -9``), Triton 2.51 neither restarts it nor says so: the
model stays READY and answers every request with ``Stub process '<m>_0_0' is not healthy``.
:class:`Supervisor` watches the server's stubs and, when one is gone while Triton still calls
its model ready, unloads the model (so its readiness says it cannot answer, and requests get
a clear "not ready" error) and loads it again through the model-control API (the server runs
with ``--model-control-mode=explicit``), which starts a new stub.

A stub counts as dead only when it is missing on two checks in a row and Triton still reports
its model version ready, so the stubs that end during a normal unload, a version rollout or
the server's shutdown are never mistaken for crashes.

``satwatch serve`` runs it in a thread (foreground) or as ``python -m
satwatch.server.supervisor`` in the server's process group (``--detach``); each recovery is
logged.

Example::

    supervisor = Supervisor(server_pid, "127.0.0.1:8000", admin_key="s3cret")
    for recovery in supervisor.check():   # call every interval
        print(recovery.describe())
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from satwatch.server.config import ADMIN_HEADER

LOGGER = logging.getLogger("satwatch.server.supervisor")  # also when run as __main__

STUB_NAME = "triton_python_backend_stub"
ADMIN_KEY_ENV = "SATWATCH_ADMIN_KEY"
"""The supervisor process reads the admin key here, never from its command line (ps shows it)."""

CHECK_INTERVAL = 0.25
"""Seconds between two looks at the stubs: a death is acted on within two of them."""

RESCAN_SECONDS = 1.0
"""Seconds between two searches for new stubs among all processes (a model loaded since).

Finding a process's children reads every process of the machine; between two searches a
check only reads the status of the stubs it knows, which is what finding a death needs.
"""

RELEASE_SECONDS = 1.5
"""Pause between unloading a dead stub's model and loading it again (see ``_reload``)."""

SHARED_MEMORY = Path("/dev/shm")
"""Where the Python backend keeps each stub's shared-memory region (``shm_open``)."""

StubKey = tuple[str, str, str]
"""(model, version, instance name) of one backend stub."""


@dataclass(frozen=True)
class Recovery:
    """One dead stub and what the supervisor did about it.

    Attributes:
        model: The model whose stub died.
        instance: The stub's instance name (``<model>_<group>_<index>``).
        pid: The dead stub's process id (-1: it died before the supervisor first looked).
        seconds: From noticing the death to the model being ready again.
        error: Why the reload failed ("" when it worked).
    """

    model: str
    instance: str
    pid: int
    seconds: float
    error: str = ""

    def describe(self) -> str:
        """One log line."""
        pid = f"pid {self.pid}" if self.pid >= 0 else "before the supervisor saw it"
        head = f"model {self.model!r}: backend stub {self.instance} ({pid}) died"
        if self.error:
            return f"{head}; reload failed after {self.seconds:.1f} s: {self.error}"
        return f"{head}; unloaded and reloaded, READY again after {self.seconds:.1f} s"


def stub_command_lines(server_pid: int) -> dict[int, list[str]]:
    """Return pid -> command line of each live backend stub of the server.

    A stub's command line is ``stub <repo>/<model>/<version>/<file> <shm region> <shm size>
    <shm growth> <parent pid> <backend dir> <ipc handle> <instance name> <runtime dir>``.
    """
    try:
        children = psutil.Process(server_pid).children()
    except psutil.Error:
        return {}
    stubs = {}
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            args = child.cmdline()
        except psutil.Error:
            continue
        if len(args) > 8 and Path(args[0]).name == STUB_NAME:
            stubs[child.pid] = args
    return stubs


def remove_shared_memory(regions: list[str]) -> None:
    """Remove stubs' shared-memory regions that nothing will use again from ``/dev/shm``.

    A stub that is killed, or a server that is, leaves its region behind (up to ~100 MiB for
    TranAD's); unlinking the name never disturbs a mapping still open.
    """
    for region in regions:
        path = SHARED_MEMORY / Path(region).name  # a bare name, never a path elsewhere
        if path.name.startswith("triton_") and path.exists():
            path.unlink(missing_ok=True)
            LOGGER.info("removed the shared-memory region %s left behind", path)


def live_stubs(server_pid: int) -> dict[StubKey, int]:
    """Return the live instance stubs of the server: (model, version, instance) -> pid.

    Only stubs of model instances (``<model>_<group>_<index>``) count: while a model loads,
    Triton also runs a short-lived stub named after the model alone (it completes the
    config), whose end is no crash.
    """
    return {key: pid for pid, (key, _) in _instance_stubs(server_pid).items()}


def _instance_stubs(server_pid: int) -> dict[int, tuple[StubKey, str]]:
    """pid -> ((model, version, instance), shared-memory region) of each instance stub.

    Two stubs may share a key for a moment: a reload of a version starts the new one before
    the old one ends (and a failed reload's new stub ends while the old one serves on).
    """
    stubs = {}
    for pid, args in stub_command_lines(server_pid).items():
        model_file = Path(args[1])
        model, instance = model_file.parent.parent.name, args[8]
        if re.fullmatch(rf"{re.escape(model)}_\d+_\d+", instance):
            stubs[pid] = ((model, model_file.parent.name, instance), args[2])
    return stubs


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class Supervisor:
    """Watches one server's backend stubs and reloads the model of a dead one.

    Args:
        server_pid: The ``tritonserver`` process.
        http_address: ``host:port`` of its HTTP endpoint.
        admin_key: The key of the model-control API (``None`` when it is open).
        load_timeout: Seconds one call to the server (a reload among them) may take.
    """

    server_pid: int
    http_address: str
    admin_key: str | None = None
    load_timeout: float = 120.0
    _known: dict[StubKey, int] = field(default_factory=dict, init=False)
    _missing: set[StubKey] = field(default_factory=set, init=False)
    _regions: dict[int, str] = field(default_factory=dict, init=False)
    _seeded: bool = field(default=False, init=False)
    _processes: dict[int, tuple[StubKey, psutil.Process]] = field(default_factory=dict, init=False)
    _next_scan: float = field(default=0.0, init=False)

    def regions(self) -> list[str]:
        """The shared-memory regions of the stubs being watched."""
        return list(self._regions.values())

    def server_alive(self) -> bool:
        """Whether the server process still runs."""
        try:
            return psutil.Process(self.server_pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def check(self) -> list[Recovery]:
        """Look at the stubs once; reload the model of each stub found dead."""
        live = self._scan() if time.monotonic() >= self._next_scan else self._still_running()
        if not self._seeded:
            self._seed(live)
        gone = {key for key in self._known if key not in live}
        recoveries = []
        if gone & self._missing:
            with self._client() as client:
                confirmed = {key for key in gone & self._missing if self._ready(client, key)}
                dead_models = {key[0]: key for key in sorted(confirmed)}
                recoveries = [self._reload(client, key) for key in dead_models.values()]
        # A stub missing once is looked at again next time; one missing twice is settled.
        self._missing = gone - self._missing
        self._known = {**live, **{key: self._known[key] for key in self._missing}}
        watched = set(self._known.values())
        watched |= set(self._processes)
        self._regions = {pid: region for pid, region in self._regions.items() if pid in watched}
        return recoveries

    def _scan(self) -> dict[StubKey, int]:
        """Every live instance stub of the server, new ones included."""
        found = _instance_stubs(self.server_pid)
        self._next_scan = time.monotonic() + RESCAN_SECONDS
        for pid, (key, region) in found.items():
            if pid not in self._processes:
                # A stub's command line is unreadable once it has died: keep its region now.
                self._regions[pid] = region
                with contextlib.suppress(psutil.Error):
                    self._processes[pid] = (key, psutil.Process(pid))
        self._processes = {pid: seen for pid, seen in self._processes.items() if pid in found}
        return {key: pid for pid, (key, _) in found.items()}

    def _still_running(self) -> dict[StubKey, int]:
        """The stubs of the last scan that still run (a cheap look between two scans).

        A key stays live while any of its stubs runs, as in a scan.
        """
        return {key: pid for pid, (key, proc) in self._processes.items() if _running(proc)}

    def _seed(self, live: dict[StubKey, int]) -> None:
        """Watch every instance Triton serves, not only the stubs seen alive: one that died
        before the first look (between the server's readiness and this supervisor's start)
        is then found dead like any other. Tried again next check if the server does not
        answer yet."""
        try:
            with self._client() as client:
                expected = self._instances(client)
        except (InferenceServerException, OSError) as error:
            LOGGER.info("supervisor: the server's models are not known yet (%s)", error)
            return
        self._known |= {key: -1 for key in expected if key not in live}
        self._seeded = True

    def _instances(self, client: httpclient.InferenceServerClient) -> set[StubKey]:
        """(model, version, instance) of every READY model version that runs in a stub."""
        keys = set()
        for entry in client.get_model_repository_index(headers=self._headers):
            if entry.get("state") != "READY":
                continue
            name, version = entry["name"], entry.get("version", "")
            config = client.get_model_config(name, version)
            if config.get("platform") == "ensemble":  # ensembles run in Triton itself
                continue
            for group, instances in enumerate(config.get("instance_group", [])):
                prefix = instances.get("name") or f"{name}_{group}"
                for index in range(int(instances.get("count", 1))):
                    keys.add((name, version, f"{prefix}_{index}"))
        return keys

    def _client(self) -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(
            self.http_address, network_timeout=self.load_timeout
        )

    @property
    def _headers(self) -> dict[str, str] | None:
        return {ADMIN_HEADER: self.admin_key} if self.admin_key else None

    @staticmethod
    def _ready(client: httpclient.InferenceServerClient, key: StubKey) -> bool:
        try:
            return bool(client.is_model_ready(key[0], key[1]))
        except (InferenceServerException, OSError):
            return False  # not answering (shutting down): nothing to reload

    def _reload(self, client: httpclient.InferenceServerClient, key: StubKey) -> Recovery:
        model, _, instance = key
        pid = self._known.get(key, -1)
        started = time.monotonic()
        error = ""
        try:
            # Unload first: until the new stub is up, readiness says the model cannot answer
            # and new requests are refused at once ("no available versions").
            client.unload_model(model, headers=self._headers)
            # A request already sent to the dead stub fails by itself within about a second
            # (the Python backend's own health check); loading before that holds it, and
            # every request queued behind it, until the load has finished.
            time.sleep(RELEASE_SECONDS)
            remove_shared_memory([self._regions.pop(pid)] if pid in self._regions else [])
            client.load_model(model, headers=self._headers)
        except InferenceServerException as failure:
            error = failure.message() or str(failure)
        recovery = Recovery(model, instance, pid, time.monotonic() - started, error)
        (LOGGER.error if error else LOGGER.warning)("%s", recovery.describe())
        return recovery


def supervise(
    supervisor: Supervisor,
    stop: threading.Event,
    interval: float = CHECK_INTERVAL,
    on_recovery: Callable[[Recovery], None] | None = None,
) -> None:
    """Check every ``interval`` seconds until ``stop`` is set or the server has exited."""
    while not stop.wait(interval) and supervisor.server_alive():
        try:
            recoveries = supervisor.check()
        except Exception as error:  # noqa: BLE001 - the watcher must outlive any one bad check
            LOGGER.warning("supervisor check failed (%s); trying again", error)
            continue
        for recovery in recoveries:
            if on_recovery is not None:
                on_recovery(recovery)


def start_thread(
    supervisor: Supervisor, on_recovery: Callable[[Recovery], None] | None = None
) -> tuple[threading.Thread, threading.Event]:
    """Run :func:`supervise` in a daemon thread; set the returned event to end it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=supervise,
        args=(supervisor, stop),
        kwargs={"on_recovery": on_recovery},
        name="satwatch-supervisor",
        daemon=True,
    )
    thread.start()
    return thread, stop


def main(argv: list[str] | None = None) -> None:
    """The detached supervisor: ``python -m satwatch.server.supervisor --server-pid N ...``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--http-address", required=True, help="host:port of the HTTP endpoint")
    parser.add_argument("--log-file", type=Path, required=True)
    parser.add_argument("--pid-file", type=Path, help="removed when the server dies")
    parser.add_argument("--interval", type=float, default=CHECK_INTERVAL)
    args = parser.parse_args(argv)
    logging.basicConfig(
        filename=args.log_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    supervisor = Supervisor(args.server_pid, args.http_address, os.environ.get(ADMIN_KEY_ENV))
    LOGGER.info("supervising tritonserver %d at %s", args.server_pid, args.http_address)
    supervise(supervisor, threading.Event(), args.interval)
    LOGGER.info("tritonserver %d has exited; supervisor done", args.server_pid)
    # A server killed outright leaves its stubs' regions; a clean stop has removed them.
    remove_shared_memory(supervisor.regions())
    if args.pid_file is not None:
        _remove_pid_file(args.pid_file, args.server_pid)


def _remove_pid_file(pid_file: Path, pid: int) -> None:
    """Remove the pid file of an exited server, unless it already names another one."""
    try:
        named = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if named == pid:
        pid_file.unlink(missing_ok=True)
        LOGGER.info("removed %s", pid_file)


if __name__ == "__main__":
    main()
