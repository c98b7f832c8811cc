"""Command processes for the tests without paying the libraries' import each time.

A test that starts `python -m src.run ...` wants a process of its own: its exit code, what it
prints, the signals it is sent, the folder it leaves. In a fresh interpreter such a process spends
about 10 s of CPU importing torch, transformers, scikit-learn, NLTK and matplotlib before it does
anything, which made those imports half of the suite's CPU time on two cores. So the tests start
most such processes from a fork server: one process per pytest worker that imports those
libraries once (`PRELOAD`, third-party only: nothing of src/), then forks a child per command. The
child takes the command's working folder, environment, arguments and standard streams and runs
`src.<command>` as `python -m` does (runpy, `__main__`): its own pid, exit code and signals, every
line of our code imported and run in it.

What a forked child does not show is the interpreter's own start: which modules a command imports,
and environment variables read at import (NLTK_DATA, HF_HUB_OFFLINE). Tests about those start a
fresh interpreter (`run_cli(fresh=True)`, or any `env=`, or a variable of the server's start
changed since), as do machines with a CUDA driver (CUDA
must not be initialised before a fork) and a server that finds threads of its own it cannot fork
safely.

The server: `python -m tests.forkserver SOCKET`. Per command a client sends the request (JSON) and
its stdin, stdout, stderr and a status pipe (SCM_RIGHTS); the server forks a watcher, which forks
the command, writes its pid to the status pipe, waits for it and writes its exit code (negative:
the signal that ended it), as subprocess.Popen reports it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# What a command imports before it trains, measured (`python -X importtime -m src.run
# debug=smoke`): about 9-10 s of the ~12 s a smoke run took on a 2-core EPYC.
PRELOAD = (
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.bert.modeling_bert",
    "transformers.trainer",
    "sklearn.model_selection",
    "sklearn.metrics",
    "scipy.stats",
    "nltk.corpus",
    "matplotlib.figure",
    "hydra",
    "omegaconf",
    "optuna",
)
READY = "ready"


def _serve(path: str) -> dict:
    """Import PRELOAD, listen on `path`; returns (in the command's process only) its request."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import gc

    import torch

    gc.freeze()  # the libraries' objects: never collected, so not copied into each child
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    refused = torch.cuda.is_initialized() and "CUDA is initialised"
    sys.stdout.write(f"{refused or READY}\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
        conn.close()
        if os.fork() == 0:  # the watcher
            listener.close()
            return _watch(json.loads(message), fds)
        for fd in fds:
            os.close(fd)
        while True:  # reap the watchers that ended
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def _watch(request: dict, fds: list[int]) -> dict:
    """Fork the command, report its pid and then its exit code on the status pipe."""
    *stdio, status = fds
    pid = os.fork()
    if pid == 0:
        os.close(status)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
            os.close(fd)
        return request
    for fd in stdio:
        os.close(fd)
    os.write(status, f"{pid}\n".encode())
    _, code = os.waitpid(pid, 0)
    os.write(status, f"{os.waitstatus_to_exitcode(code)}\n".encode())
    os._exit(0)


def _become(request: dict) -> None:
    """This process is now `python -m MODULE ARGS` in the request's folder and environment."""
    import runpy

    import numpy as np

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    np.random.seed()  # a fresh interpreter's unseeded state, not the server's
    sys.argv = [request["module"], *request["args"]]
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


class Started:
    """A command started by the server, read as subprocess.Popen is: pid, poll, wait,
    send_signal, communicate, returncode; `stdout`/`stderr` given as PIPE are files here (read
    them whole, at any time)."""

    def __init__(self, args: list[str], pid: int, status: int, outputs: dict) -> None:
        self.args, self.pid, self._status, self._outputs = args, pid, status, outputs
        self.returncode: int | None = None
        self.stdout, self.stderr = outputs.get("stdout"), outputs.get("stderr")

    def _read_status(self, timeout: float | None) -> None:
        if self.returncode is None and select.select([self._status], [], [], timeout)[0]:
            line = os.read(self._status, 64).decode().strip()
            self.returncode = int(line) if line else -9  # a watcher killed with its command
            os.close(self._status)

    def poll(self) -> int | None:
        self._read_status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._read_status(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(9)

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        self.wait(timeout)
        return tuple(self._text(self._outputs.get(k)) for k in ("stdout", "stderr"))

    @staticmethod
    def _text(file) -> str | None:
        if file is None:
            return None
        file.seek(0)
        return file.read()


class Server:
    """The client side: starts the server on first use; `start` runs a command through it."""

    def __init__(self, env: dict) -> None:
        """`env`: the environment the server imports under, the tests' own as they started
        (not what a library has set in their process since)."""
        self._proc: subprocess.Popen | None = None
        self._path = ""
        self._env = dict(env)
        self.refused = os.path.exists("/dev/nvidiactl") and "a CUDA driver is loaded"
        self._null = open(os.devnull, "r+")  # noqa: SIM115 (stdin, and DEVNULL, of every command)

    def _ensure(self) -> bool:
        if self.refused:
            return False
        if self._proc is None:
            self._path = str(Path(tempfile.mkdtemp(prefix="forkserver-")) / "socket")
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.forkserver", self._path],
                cwd=Path(__file__).resolve().parents[1],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                env=self._env,
                text=True,
            )
            said = self._proc.stdout.readline().strip()
            if said != READY:
                self.refused = said or "it did not start"
                self.close()
                message = f"fork server: {self.refused}; commands start fresh interpreters"
                warnings.warn(message, stacklevel=3)
                return False
        return True

    def start(
        self, module: str, args: list[str], cwd: Path, env: dict, stdout=None, stderr=None
    ) -> Started | None:
        """The command started, or None where the server cannot start it (use a fresh one)."""
        if not self._ensure() or not _same_start(self._env, env):
            return None  # an environment the libraries did not import under: a fresh process
        outputs, fds, null = {}, [], self._null
        for name, given in (("stdout", stdout), ("stderr", stderr)):
            if given == subprocess.PIPE:
                given = outputs[name] = tempfile.TemporaryFile("w+")  # noqa: SIM115 (read later)
            elif given is None:
                given = getattr(sys, f"__{name}__")
            elif given == subprocess.DEVNULL:
                given = null
            fds.append(given.fileno())
        status_r, status_w = os.pipe()
        request = {"module": module, "args": list(args), "cwd": str(cwd), "env": dict(env)}
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(self._path)
            socket.send_fds(conn, [json.dumps(request).encode()], [null.fileno(), *fds, status_w])
        os.close(status_w)
        pid = _read_pid(status_r)
        return Started([sys.executable, "-m", module, *args], pid, status_r, outputs)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            shutil.rmtree(Path(self._path).parent, ignore_errors=True)


def _same_start(start: dict, env) -> bool:
    """Whether `env` is the server's own (`start`) as far as the libraries' import read it:
    none of its variables changed or removed. Variables added since (pytest's
    PYTEST_CURRENT_TEST; those a library sets while it runs in the tests' process, such as
    KMP_INIT_AT_FORK) reach the command's environment all the same."""
    return all(env.get(k) == v for k, v in start.items() if k != "PYTEST_CURRENT_TEST")


def _read_pid(status: int) -> int:
    line = b""
    deadline = time.monotonic() + 60
    while not line.endswith(b"\n"):
        assert time.monotonic() < deadline, "the fork server gave no pid"
        select.select([status], [], [], 1)
        line += os.read(status, 1)
    return int(line)


if __name__ == "__main__":
    _become(_serve(sys.argv[1]))
