"""A ``tributary`` server process on a temporary SQLite database, for
examples and tests: found through ``TRIBUTARY_BIN``, else
``<repo>/target/release/tributary``, else ``<repo>/target/debug/tributary``,
else ``tributary`` on the ``PATH``; started on a free loopback port and
waited for until it answers calls.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from ._proto.tributary.v1 import workflow_pb2, workflow_pb2_grpc
from .errors import TributaryError

__all__ = ["LocalServer", "find_server_binary"]


def find_server_binary(search_from: Path | None = None) -> Path:
    """The ``tributary`` binary to run (see the module's doc for the order).
    The repository is searched for upwards from ``search_from`` (default:
    the working directory)."""
    configured = os.environ.get("TRIBUTARY_BIN")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise TributaryError(f"TRIBUTARY_BIN={configured} is not a file")
        return path
    start = (search_from or Path.cwd()).resolve()
    for directory in [start, *start.parents]:
        for profile in ("release", "debug"):
            candidate = directory / "target" / profile / "tributary"
            if candidate.is_file():
                return candidate
    found = shutil.which("tributary")
    if found:
        return Path(found)
    raise TributaryError(
        "cannot find the tributary server binary: set TRIBUTARY_BIN, or build it"
        " (cargo build --release -p tributary-server)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalServer:
    """A server process of its own, on ``127.0.0.1`` and a fresh SQLite file.

    .. code-block:: python

        with LocalServer() as server:
            client = Client(server.url)
    """

    def __init__(
        self,
        binary: Path | None = None,
        *,
        extra_args: Sequence[str] = (),
        search_from: Path | None = None,
        log_path: Path | None = None,
        database_url: str | None = None,
    ) -> None:
        self.binary = binary or find_server_binary(search_from)
        """The server binary."""
        self.extra_args = list(extra_args)
        """Flags added to ``tributary serve``."""
        self._directory = tempfile.TemporaryDirectory(prefix="tributary-py-")
        self.database = Path(self._directory.name) / "tributary.db"
        """The SQLite file (unless ``database_url`` names another database)."""
        self.database_url = database_url or f"sqlite://{self.database}"
        """The database the server uses."""
        self.port = _free_port()
        """The loopback port."""
        self.url = f"http://127.0.0.1:{self.port}"
        """The server's URL."""
        self.log_path = log_path or Path(self._directory.name) / "server.log"
        """Where the server's output goes."""
        self.process: subprocess.Popen[bytes] | None = None
        """The running process, if any."""

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        """Start the process (again, on the same port and database) and wait
        until it answers a call."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "serve",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--database-url",
                    self.database_url,
                    "--log-level",
                    "warn",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until the server answers ``ListWorkflows``."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise TributaryError(
                        f"the server exited with {self.process.returncode}; see {self.log_path}"
                    )
                try:
                    stub.ListWorkflows(workflow_pb2.ListWorkflowsRequest(), timeout=1.0)
                    return
                except grpc.RpcError as error:
                    # A server with API keys answers, refusing the call.
                    if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                        return
                    if time.monotonic() > deadline:
                        raise TributaryError(
                            f"the server on port {self.port} did not answer within {timeout} s"
                        ) from None
                    time.sleep(0.05)

    def kill(self) -> None:
        """Stop the process at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process gracefully (SIGTERM), killing it after ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        """Stop the process and delete the database."""
        self.stop()
        self._directory.cleanup()

    def log(self) -> str:
        """What the server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
