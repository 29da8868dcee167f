"""Running the emulator: blocking for the CLI, or in a background thread for tests."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from types import TracebackType

import requests
import uvicorn

from emulator.app import create_app
from emulator.config import EmulatorConfig
from emulator.devauth import check_exposure
from emulator.service import RecordingService

log = logging.getLogger(__name__)


def serve(config: EmulatorConfig) -> None:
    """Serve until interrupted (``cloudrec emulator``)."""
    check_exposure(config.host, config.dev_token)
    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")


class EmulatorServer:
    """The emulator served by uvicorn in a daemon thread.

    ``port=0`` binds a free port; ``base_url`` is known once :meth:`start` returns, which is
    when the server answers HTTP.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        check_exposure(config.host, config.dev_token)
        self.config = config
        self.service = RecordingService(config)
        self.app = create_app(config, self.service)
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when
        # the listening socket says TCP, and without it keep-alive requests stall ~40 ms.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((config.host, config.port))
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://{config.host}:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="on", access_log=False)
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"emulator-{self.port}",
            daemon=True,
        )

    def start(self, timeout: float = 20.0) -> EmulatorServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("the emulator server thread exited during startup")
            if self._server.started:
                try:
                    requests.get(f"{self.base_url}/dev/faults", timeout=1)  # any answer
                    return self
                except requests.RequestException:
                    pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"the emulator did not answer on {self.base_url} within {timeout}s")

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down: the service finishes live recordings, then the server exits."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(config: EmulatorConfig | None = None, **overrides: object) -> EmulatorServer:
    """Start the emulator on a free loopback port (unless ``config.port`` says otherwise) and
    return its handle once it answers: ``.base_url``, ``.service``, ``.stop()``."""
    config = config or EmulatorConfig(port=0)
    if overrides:
        config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
    return EmulatorServer(config).start()
