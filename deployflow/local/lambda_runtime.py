"""A real Lambda runtime on this machine, without Docker: the Runtime Interface Emulator plus ``awslambdaric``.

One runtime process per function (and per distinct configuration of it), started on its first invocation and kept
warm, as Lambda keeps an execution environment: ``aws-lambda-rie --runtime-interface-emulator-address A
--runtime-api-address B <python> -m awslambdaric <Handler>``, with the function's environment, Timeout
(``AWS_LAMBDA_FUNCTION_TIMEOUT``, enforced by the emulator) and MemorySize (enforced by a cgroup where this machine
lets us create one, see ``MemoryLimits``).

What the emulator answers on ``POST /2015-03-31/functions/function/invocations`` (checked on this machine, RIE of
aws-sam-cli 1.170.0) and what ``Reply`` turns it into - what the Lambda Invoke API returns:

- the handler's result: HTTP 200, the JSON payload;
- an exception: HTTP 200 with the runtime's error document ``{"errorMessage", "errorType", "requestId",
  "stackTrace"}`` and *no* error header: recognised by its shape; Invoke adds ``X-Amz-Function-Error: Unhandled``;
- the Timeout passed: HTTP 200, plain text ``Task timed out after 2.00 seconds`` (the runtime is killed and
  re-initialised on the next call): Invoke returns ``{"errorType": "Sandbox.Timedout", "errorMessage": "RequestId:
  <id> Error: Task timed out after 2.00 seconds"}`` with the error header (README, "Lambda errors");
- a crash (the process exited, an import error): HTTP 502 with ``{"errorType": "Runtime.ExitError", ...}``; when the
  function's memory cgroup recorded an OOM kill, ``Runtime.OutOfMemory`` as on AWS.

Two overlapping invocations of one emulator crash it (aws-lambda-runtime-interface-emulator issue 97): calls to one
process are serialized by its lock; different functions run concurrently.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployflow.local.ports import free_loopback_port

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_REQUIREMENTS = REPO_ROOT / "functions" / "requirements.txt"
RUNTIME_REQUIREMENTS = Path(__file__).with_name("runtime-requirements.txt")
CACHE_DIR = REPO_ROOT / ".cache" / "lambda-runtime"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
TIMEOUT_ERROR = "Sandbox.Timedout"
OUT_OF_MEMORY_ERROR = "Runtime.OutOfMemory"
_ERROR_KEYS = frozenset({"errorMessage", "errorType", "requestId", "stackTrace", "cause"})
_TIMED_OUT = re.compile(r"^Task timed out after [0-9.]+ seconds$")
_START_TIMEOUT_SECONDS = 10.0
_LOG_TAIL_BYTES = 4096


class RuntimeSetupError(Exception):
    """The Lambda runtime cannot be set up on this machine (emulator binary, interpreter or virtualenv)."""


class RuntimeStartError(Exception):
    """A function's runtime process did not start; the message names the function and the reason."""


# --- what runs the functions ------------------------------------------------------------------------------------


def _arch() -> str:
    machine = platform.machine().lower()
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"


def find_emulator() -> Path:
    """The ``aws-lambda-rie`` binary: ``$DEPLOYFLOW_LAMBDA_RIE``, the one in the pinned aws-sam-cli wheel
    (``.venv-sam``, built by ``make .venv-sam/.installed``), or ``aws-lambda-rie`` on PATH (``go install``)."""
    configured = os.environ.get("DEPLOYFLOW_LAMBDA_RIE")
    if configured:
        path = Path(configured)
        if not os.access(path, os.X_OK):
            raise RuntimeSetupError(f"DEPLOYFLOW_LAMBDA_RIE={configured} is not an executable file")
        return path
    name = f"aws-lambda-rie-{_arch()}"
    for candidate in sorted(
        (REPO_ROOT / ".venv-sam" / "lib").glob(f"python3*/site-packages/samcli/local/rapid/{name}")
    ):
        if os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("aws-lambda-rie")
    if on_path:
        return Path(on_path)
    raise RuntimeSetupError(
        f"the Lambda Runtime Interface Emulator is missing: no {name} in .venv-sam (run `make .venv-sam/.installed`), "
        "no aws-lambda-rie on PATH, no DEPLOYFLOW_LAMBDA_RIE"
    )


@dataclass(frozen=True)
class Interpreter:
    """The Python the functions run on, and whether it is the one the template's Runtime names."""

    path: Path
    version: str
    wanted: str
    exact: bool

    def describe(self) -> str:
        if self.exact:
            return f"Python {self.version} ({self.path}), as the template's Runtime {self.wanted}"
        return (
            f"Python {self.version} ({self.path}): NOT the template's Runtime {self.wanted}, which this machine lacks "
            "(install it, e.g. with pyenv, to run the functions on it)"
        )


def find_interpreter(runtime: str) -> Interpreter:
    """The interpreter for a template ``Runtime`` (``python3.13``): on PATH, under pyenv, else this venv's Python."""
    version = runtime.removeprefix("python")
    candidates: list[Path] = []
    on_path = shutil.which(runtime)
    if on_path:
        candidates.append(Path(on_path))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(pyenv_root.glob(f"versions/{version}*/bin/{runtime}"), reverse=True)
    for candidate in candidates:
        if not os.access(candidate, os.X_OK):
            continue
        try:  # a pyenv shim on PATH may name a version that is not selected: it does not run
            found = _version_of(candidate)
        except RuntimeSetupError:
            continue
        if found.startswith(version + "."):
            return Interpreter(candidate, found, runtime, exact=True)
    fallback = Path(sys.executable)
    return Interpreter(fallback, _version_of(fallback), runtime, exact=False)


def _version_of(python: Path) -> str:
    result = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeSetupError(f"the interpreter {python} does not run: {result.stderr.strip()[-300:]}")
    return result.stdout.strip()


def functions_virtualenv(interpreter: Interpreter, cache_dir: Path = CACHE_DIR) -> Path:
    """The functions' virtualenv for an interpreter (functions/requirements.txt + awslambdaric), built once into
    ``.cache/lambda-runtime/`` keyed by the interpreter's version and the requirement files' contents; its python."""
    digest = hashlib.sha256()
    digest.update(interpreter.version.encode())
    for requirements in (FUNCTIONS_REQUIREMENTS, RUNTIME_REQUIREMENTS):
        digest.update(requirements.read_bytes())
    target = cache_dir / f"python{interpreter.version}-{digest.hexdigest()[:12]}"
    python = target / "bin" / "python"
    stamp = target / ".installed"
    if stamp.exists():
        return python
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be building the same one
        if stamp.exists():
            return python
        shutil.rmtree(target, ignore_errors=True)
        steps = [
            [str(interpreter.path), "-m", "venv", str(target)],
            [
                *(str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
                *("-r", str(FUNCTIONS_REQUIREMENTS), "-r", str(RUNTIME_REQUIREMENTS)),
            ],
        ]
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
            if result.returncode != 0:
                shutil.rmtree(target, ignore_errors=True)
                raise RuntimeSetupError(
                    f"could not build the functions' virtualenv {target}: {' '.join(step[:4])} ...: "
                    f"{(result.stderr or result.stdout).strip()[-500:]}"
                )
        stamp.write_text(interpreter.describe() + "\n", encoding="utf-8")
    return python


# --- memory ---------------------------------------------------------------------------------------------------


class MemoryLimits:
    """Per-process memory cgroups (v1 ``memory.limit_in_bytes`` or v2 ``memory.max``) under this process's own
    cgroup, where this machine lets us create them; otherwise memory is not enforced and ``reason`` says why."""

    def __init__(self) -> None:
        self.base: Path | None = None
        self.version = 0
        self.reason = ""
        try:
            self._detect()
        except OSError as e:
            self.base, self.reason = None, f"cgroups not usable: {e}"

    def _detect(self) -> None:
        lines = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                if (base / "memory.limit_in_bytes").exists() and os.access(base, os.W_OK):
                    self.base, self.version = base, 1
                    return
        for line in lines:
            if line.startswith("0::"):
                base = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
                subtree = base / "cgroup.subtree_control"
                if subtree.exists() and "memory" in subtree.read_text() and os.access(base, os.W_OK):
                    self.base, self.version = base, 2
                    return
        self.reason = "no writable memory cgroup for this process (/sys/fs/cgroup is read-only or lacks memory)"

    @property
    def enforced(self) -> bool:
        return self.base is not None

    def describe(self) -> str:
        if self.base is None:
            return f"MemorySize NOT enforced: {self.reason}"
        return f"MemorySize enforced by cgroup v{self.version} ({self.base})"

    def create(self, name: str, megabytes: int) -> Path | None:
        if self.base is None:
            return None
        group = self.base / f"deployflow-{name}-{uuid.uuid4().hex[:8]}"
        try:
            group.mkdir()
            limit = str(megabytes * 1024 * 1024)
            if self.version == 1:
                (group / "memory.limit_in_bytes").write_text(limit)
                with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                    (group / "memory.memsw.limit_in_bytes").write_text(limit)
            else:
                (group / "memory.max").write_text(limit)
                with contextlib.suppress(OSError):
                    (group / "memory.swap.max").write_text("0")
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
            return None
        return group

    def add(self, group: Path, pid: int) -> None:
        (group / "cgroup.procs").write_text(str(pid))

    def oom_kills(self, group: Path | None) -> int:
        if group is None:
            return 0
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError, ValueError):
            for line in (group / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self, group: Path | None) -> None:
        if group is None:
            return
        for _ in range(50):
            try:
                group.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)  # the killed processes are still leaving the group


# --- one function's runtime -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionConfig:
    """What a runtime process is started with; a change (e.g. UpdateFunctionConfiguration) means a new process."""

    function_name: str
    handler: str
    timeout: int
    memory_size: int
    environment: tuple[tuple[str, str], ...]
    code_paths: tuple[str, ...]


@dataclass
class Reply:
    """One invocation as the Lambda Invoke API returns it."""

    payload: bytes
    function_error: bool
    error_type: str | None
    error_message: str | None
    result: Any
    log_tail: str
    request_id: str


@dataclass
class RuntimeProcess:
    """The emulator and its runtime for one function configuration; ``invoke`` is serialized."""

    config: FunctionConfig
    emulator: Path
    python: Path
    log_path: Path
    memory: MemoryLimits
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    cgroup: Path | None = None
    invocations: int = 0
    hang_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Start the emulator on two free loopback ports; raises RuntimeStartError naming the function."""
        last_reason = ""
        for _ in range(3):  # a port taken between choosing it and the emulator binding it: choose again
            self.port, api_port = free_loopback_port(), free_loopback_port()
            env = self._environment()
            command = [
                str(self.emulator),
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{self.port}",
                "--runtime-api-address",
                f"127.0.0.1:{api_port}",
                str(self.python),
                "-m",
                "awslambdaric",
                self.config.handler,
            ]
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    command,
                    env=env,
                    cwd=self.config.code_paths[0] if self.config.code_paths else None,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() ends the runtime with the emulator
                )
            # The emulator starts the runtime on the first invocation, so joining the cgroup now covers it.
            self.cgroup = self.memory.create(self.config.function_name, self.config.memory_size)
            if self.cgroup is not None:
                try:
                    self.memory.add(self.cgroup, self.process.pid)
                except OSError:
                    self.memory.remove(self.cgroup)
                    self.cgroup = None
            deadline = time.monotonic() + _START_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
                time.sleep(0.02)
            last_reason = self._log_tail(600) or f"exit status {self.process.poll()}"
            self.stop()
            if "address already in use" not in last_reason:
                break
        raise RuntimeStartError(
            f"the Lambda runtime of {self.config.function_name} did not start within {_START_TIMEOUT_SECONDS:.0f}s: "
            f"{last_reason.strip()}"
        )

    def _environment(self) -> dict[str, str]:
        config = self.config
        python_path = os.pathsep.join(config.code_paths)
        env = {
            "PATH": f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "HOME": os.environ.get("HOME", str(Path.home())),
            "LAMBDA_TASK_ROOT": config.code_paths[0] if config.code_paths else os.getcwd(),
            "PYTHONPATH": python_path,
            "PYTHONUNBUFFERED": "1",
            "_HANDLER": config.handler,
        }
        env.update(dict(config.environment))
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(config.timeout),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            }
        )
        return env

    def invoke(self, body: bytes, *, client_timeout: float | None = None) -> Reply:
        """One invocation; the caller's thread waits for it (the emulator enforces the function's Timeout)."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self.stop()
                self.start()
            kills_before = self.memory.oom_kills(self.cgroup)
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            if self.hang_next > 0:
                self.hang_next -= 1
                threading.Thread(target=self._freeze_runtime, args=(log_offset,), daemon=True).start()
            connection = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=client_timeout or self.config.timeout + 30
            )
            try:
                connection.request("POST", INVOKE_PATH, body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                status, raw = response.status, response.read()
            except OSError as e:
                status, raw = 502, json.dumps({"errorType": "Runtime.Unknown", "errorMessage": str(e)}).encode()
            finally:
                connection.close()
            self.invocations += 1
            oom = self.memory.oom_kills(self.cgroup) > kills_before
            return translate(status, raw, oom=oom, log_tail=self._log_since(log_offset))

    def _freeze_runtime(self, log_offset: int, timeout: float = 30.0) -> None:
        """SIGSTOP the runtime once it has the invocation: the handler hangs as a stuck native call would, until the
        emulator's Timeout kills it (SIGKILL ends a stopped process too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            emulator = self.pid
            if emulator is not None and "INVOKE START" in self._log_since(log_offset, settle=0):
                for child in _children(emulator):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGSTOP)
                return
            time.sleep(0.005)

    def _log_since(self, offset: int, settle: float = 0.01) -> str:
        time.sleep(settle)  # the emulator writes END/REPORT right after the reply
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_tail(self, size: int) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode("utf-8", "replace")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """End the emulator and its runtime (the whole process group), bounded; safe to call twice."""
        process, self.process = self.process, None
        if process is not None:
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            # The runtime (a child of the emulator) may outlive it by a moment: its group is gone once it is reaped.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.memory.remove(self.cgroup)
        self.cgroup = None


def translate(status: int, raw: bytes, *, oom: bool = False, log_tail: str = "") -> Reply:
    """The emulator's reply as the Lambda Invoke API gives it (payload, X-Amz-Function-Error)."""
    text = raw.decode("utf-8", "replace")
    document: Any = None
    with contextlib.suppress(ValueError):
        document = json.loads(text) if text.strip() else None
    request_id = ""
    match = re.search(r"START RequestId: ([0-9a-f-]+)", log_tail)
    if match:
        request_id = match.group(1)
    if status == 200 and _TIMED_OUT.match(text.strip()):
        message = f"RequestId: {request_id} Error: {text.strip()}" if request_id else f"Error: {text.strip()}"
        error = {"errorType": TIMEOUT_ERROR, "errorMessage": message}
        return Reply(json.dumps(error).encode(), True, TIMEOUT_ERROR, message, None, log_tail, request_id)
    if status != 200:
        if isinstance(document, dict) and "errorType" in document:
            error = {"errorType": str(document["errorType"]), "errorMessage": str(document.get("errorMessage", ""))}
        else:
            error = {"errorType": "Runtime.Unknown", "errorMessage": f"HTTP {status}: {text[:500]}"}
        if oom:
            error = {
                "errorType": OUT_OF_MEMORY_ERROR,
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
            }
        return Reply(
            json.dumps(error).encode(), True, error["errorType"], error["errorMessage"], None, log_tail, request_id
        )
    if _is_error_document(document):
        return Reply(
            raw, True, str(document["errorType"]), str(document.get("errorMessage", "")), None, log_tail, request_id
        )
    return Reply(raw, False, None, None, document, log_tail, request_id)


def _is_error_document(document: Any) -> bool:
    """The runtime's error document (the emulator sends it with HTTP 200 and no header): its shape is the signal."""
    return (
        isinstance(document, dict)
        and "errorType" in document
        and "errorMessage" in document
        and set(document) <= _ERROR_KEYS
    )


def log_result(tail: str) -> str:
    """``LogResult`` of an Invoke with ``LogType: Tail``: the last 4 KB of the invocation's log, base64."""
    return base64.b64encode(tail.encode("utf-8")[-_LOG_TAIL_BYTES:]).decode("ascii")


def _children(parent: int) -> list[int]:
    """The direct children of a process (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
    return found


# --- every function's runtime ---------------------------------------------------------------------------------


class RuntimePool:
    """The runtime processes of a local stack: one per function configuration, started lazily, reused warm."""

    def __init__(self, *, runtime: str = "python3.13", log_dir: Path | None = None) -> None:
        self.runtime = runtime
        self.log_dir = log_dir
        self._processes: dict[str, RuntimeProcess] = {}
        self._hangs: dict[str, int] = {}
        self._lock = threading.Lock()
        self._setup: tuple[Path, Interpreter, Path] | None = None
        self.memory = MemoryLimits()
        self._closed = False

    def setup(self) -> tuple[Path, Interpreter, Path]:
        """Find the emulator and the interpreter and build the functions' virtualenv (once); raises
        RuntimeSetupError naming what is missing."""
        with self._lock:
            if self._setup is None:
                emulator = find_emulator()
                interpreter = find_interpreter(self.runtime)
                python = functions_virtualenv(interpreter)
                self._setup = (emulator, interpreter, python)
            return self._setup

    def describe(self) -> str:
        """The banner line: what runs the functions, on which Python, whether memory is enforced."""
        emulator, interpreter, _ = self.setup()
        return (
            f"Lambda runtime: {emulator.name} + awslambdaric, one warm process per function; "
            f"{interpreter.describe()}; {self.memory.describe()}"
        )

    def open(self) -> None:
        """Allow runtime processes to start (again, after ``stop``)."""
        with self._lock:
            self._closed = False

    def process_for(self, config: FunctionConfig) -> RuntimeProcess:
        emulator, _, python = self.setup()
        with self._lock:
            if self._closed:
                raise RuntimeStartError(f"the local stack is stopping: {config.function_name} was not started")
            current = self._processes.get(config.function_name)
            if current is not None and current.config == config:
                return current
            if current is not None:
                current.stop()  # the function's configuration changed: a new execution environment
            log_dir = self.log_dir or CACHE_DIR / "logs"
            process = RuntimeProcess(
                config=config,
                emulator=emulator,
                python=python,
                log_path=log_dir / f"lambda-{config.function_name}.log",
                memory=self.memory,
            )
            self._processes[config.function_name] = process
            return process

    def invoke(self, config: FunctionConfig, body: bytes) -> Reply:
        with self._lock:
            hang = self._hangs.pop(config.function_name, 0)
        process = self.process_for(config)
        process.hang_next += hang
        return process.invoke(body)

    def hang_next_invocation(self, function_name: str, times: int = 1) -> None:
        """Freeze the function's runtime during its next ``times`` invocations (a handler that hangs): the
        emulator's Timeout ends each with Sandbox.Timedout."""
        with self._lock:
            self._hangs[function_name] = self._hangs.get(function_name, 0) + times

    def pids(self) -> dict[str, int]:
        """The emulator process of each running function (for tests and diagnostics)."""
        with self._lock:
            return {name: p.pid for name, p in self._processes.items() if p.pid is not None}

    def stop(self) -> None:
        """Stop every runtime process; no new one starts afterwards."""
        with self._lock:
            self._closed = True
        self.reset()

    def reset(self) -> None:
        """Stop every runtime process at once: one function's bound (SIGTERM, then SIGKILL), not one per function."""
        with self._lock:
            processes = list(self._processes.values())
            self._processes.clear()
        stoppers = [threading.Thread(target=process.stop, name=f"stop-{process.pid}") for process in processes]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()


def function_config(function: Any, environment: Mapping[str, str | None], code_paths: Sequence[str]) -> FunctionConfig:
    """A moto ``LambdaFunction`` plus the stack's overlay (``None`` unsets) as a runtime process configuration."""
    region = str(function.region)
    env: dict[str, str | None] = {str(k): str(v) for k, v in (function.environment_vars or {}).items()}
    env.update(
        {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid5(uuid.NAMESPACE_URL, function.function_arn).hex}",
            # What `sam local invoke` sets: Powertools' Tracer turns itself off, as it should without X-Ray.
            "AWS_SAM_LOCAL": "true",
        }
    )
    env.update(environment)
    return FunctionConfig(
        function_name=str(function.function_name),
        handler=str(function.handler or ""),
        timeout=int(function.timeout),
        memory_size=int(function.memory_size),
        environment=tuple(sorted((k, v) for k, v in env.items() if v is not None)),
        code_paths=tuple(code_paths),
    )
