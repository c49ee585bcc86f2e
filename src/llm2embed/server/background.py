"""Run an app with uvicorn on a background thread (tests, notebooks, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time

__all__ = ["BackgroundServer", "ServerProcess", "free_port"]


class BackgroundServer:
    """Run an ASGI app with uvicorn on a thread, bound to ``host`` (default 127.0.0.1) on a free port.

    >>> with BackgroundServer(create_app(encoder, "my-encoder")) as server:   # doctest: +SKIP
    ...     httpx.get(server.url + "/health").json()["status"]
    'ok'
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 startup_timeout: float = 60.0):
        import uvicorn

        self.app, self.host = app, host
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="llm2embed-server", daemon=True)
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def model_name(self) -> str | None:
        return getattr(self.app.state, "model_name", None)

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited during start-up")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server did not start within {self.startup_timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()



def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m llm2embed.server MODEL ARGS...`` in a child process on 127.0.0.1, ready when ``/health`` is.

    Output goes to ``log_path`` (or is collected in :attr:`output`); start-up failures raise ``RuntimeError``
    with the server's last output. Stopping terminates the process (killed after ``stop_timeout`` s).

    >>> with ServerProcess("out/my-encoder", "--generate") as server:       # doctest: +SKIP
    ...     httpx.post(server.url + "/v1/chat/completions", json={...})
    """

    def __init__(self, model: str, *args: str, port: int | None = None, env: dict | None = None,
                 startup_timeout: float = 120.0, log_path: str | None = None, stop_timeout: float = 30.0):
        self.model, self.args = str(model), [str(a) for a in args]
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.startup_timeout, self.stop_timeout = env, startup_timeout, stop_timeout
        self.log_path = log_path
        self.output: list[str] = []
        self.health: dict | None = None
        self.proc = None
        self._reader = None
        self._log = None

    def _text(self) -> str:
        if self.log_path:
            self._log.flush()
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-3000:]
        return "".join(self.output)[-3000:]

    def start(self) -> ServerProcess:
        import subprocess
        import sys

        import httpx

        cmd = [sys.executable, "-m", "llm2embed.server", self.model, "--host", "127.0.0.1", "--port",
               str(self.port), *self.args]
        if self.log_path:
            self._log = open(self.log_path, "w")
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        else:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True)
            self._reader = threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True)
            self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the server exited during start-up:\n" + self._text())
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                if r.status_code == 200:
                    self.health = r.json()
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer /health within {self.startup_timeout} s:\n"
                                   + self._text())
            time.sleep(0.2)

    def stop(self) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(10)
            self.proc.stdout.close()
            self._reader = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
