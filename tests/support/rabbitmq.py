"""A real 3-node RabbitMQ 3.10 cluster on loopback, MQTT plugin on every node, for tests.

Stdlib only: `.ci/run` installs the Debian package with it before any venv exists
(`python3 -m tests.support.rabbitmq install`). Measured here (2 cores): start 18-27 s, a
SIGKILLed node back in the cluster 4.6-6.6 s later, about 130 MiB RSS per node.

Why it looks the way it does (Debian 12, rabbitmq-server 3.10.8, Erlang 25):

- Debian's ``/usr/sbin/rabbitmq-server`` wrapper ``su``s to user ``rabbitmq`` when run as root,
  which resets HOME (so the cookie comes from /var/lib/rabbitmq) and needs every directory owned by
  ``rabbitmq`` -- a pytest ``tmp_path`` (mode 0700, owned by root) is unusable then. We run the
  upstream script ``/usr/lib/rabbitmq/bin/rabbitmq-server`` directly as the calling user instead:
  it keeps our environment, and all state stays owned by whoever runs the tests.
- We run our own ``epmd`` in the foreground on a private port bound to 127.0.0.1, so the nodes and
  ``rabbitmqctl`` never touch another epmd, and we know its pid. Every Erlang distribution
  listener (nodes and CLI) is bound to 127.0.0.1 with ``inet_dist_use_interface``; the CLI takes an
  ephemeral distribution port (``RABBITMQ_CTL_DIST_PORT_MIN/MAX=0``) so parallel calls cannot clash.
- Every process we start inherits a marker variable; ``stop()`` kills anything still carrying
  it (a daemonised epmd, ``erl_child_setup``...), so nothing outlives the fixture. Nodes are
  SIGKILLed, not stopped: their state is thrown away with the test's directory.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
MARKER_VAR = "EDGECAM_RABBIT_CLUSTER"
_LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"
# One scheduler per node and no busy-waiting ones: three nodes share two cores with others.
_SCHEDULERS = "+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"
_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_T = TypeVar("_T")


class RabbitClusterError(RuntimeError):
    """The cluster could not be installed, started, changed or stopped as asked."""


def ensure_installed() -> None:
    """Install Debian's rabbitmq-server (3.10.x) if missing, without letting apt start a service.

    Idempotent. While apt runs, ``/usr/sbin/policy-rc.d`` exits 101 (deny); a pre-existing
    policy file is put back byte for byte afterwards, one we created is removed.
    """
    if (RABBITMQ_BIN / "rabbitmq-server").exists() and shutil.which("epmd"):
        return
    if os.geteuid() != 0:
        raise RabbitClusterError("rabbitmq-server is missing and installing it needs root")
    print("installing Debian package rabbitmq-server (and Erlang)", flush=True)
    saved = _POLICY_RC_D.read_bytes() if _POLICY_RC_D.exists() else None
    saved_mode = _POLICY_RC_D.stat().st_mode if saved is not None else 0
    _POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
    _POLICY_RC_D.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "rabbitmq-server"],
            check=True,
            env=env,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise RabbitClusterError(f"apt-get failed: {exc}") from exc
    finally:
        if saved is None:
            _POLICY_RC_D.unlink(missing_ok=True)
        else:
            _POLICY_RC_D.write_bytes(saved)
            _POLICY_RC_D.chmod(saved_mode)


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all held open together, so no duplicates)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def port_open(port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    on_timeout: Callable[[], str] = lambda: "",
    interval: float = 0.1,
) -> None:
    """Poll ``predicate`` until it is true; raise RabbitClusterError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RabbitClusterError(f"{what}: not done within {timeout:.0f} s\n{on_timeout()}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"--- {path}: {exc}"
    return f"--- last {len(text)} lines of {path}:\n" + "\n".join(text)


@dataclass
class RabbitNode:
    """One node: 1-based ``index``, Erlang ``name`` and its loopback ports."""

    index: int
    name: str
    amqp_port: int
    mqtt_port: int
    dist_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def stdout_log(self) -> Path:
        return self.directory / "stdout.log"

    @property
    def rabbit_log(self) -> Path:
        return self.directory / "log" / "rabbit.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "beam.pid"

    def log_tail(self) -> str:
        return f"{_tail(self.rabbit_log)}\n{_tail(self.stdout_log)}"  # boot crashes: stdout

    def beam_pid(self) -> int | None:
        """The pid of this node's Erlang VM (beam.smp), checked against /proc, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            exe = os.path.basename(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0])
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = exe.startswith(b"beam") and f"RABBITMQ_NODENAME={self.name}".encode() in environ
        return pid if ours and _pid_alive(pid) else None


class RabbitCluster:
    """Three RabbitMQ nodes (``rabbit1..3@localhost``) clustered, every one serving MQTT 3.1.1.

    Nodes are addressed by 1-based index (node 1 is the seed the others join). All state, logs
    included, lives under ``base_dir``, which the caller owns and which is kept after ``stop()``.
    """

    SIZE = 3

    def __init__(
        self, base_dir: Path | str, *, boot_timeout: float = 120.0, ctl_timeout: float = 60.0
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.boot_timeout = boot_timeout
        self.ctl_timeout = ctl_timeout
        self.start_seconds: float | None = None
        self._marker = f"{self.base_dir}:{secrets.token_hex(4)}"
        self._epmd: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        ports = free_ports(1 + 3 * self.SIZE)
        self.epmd_port = ports[0]
        self.nodes = [
            RabbitNode(
                i,
                f"rabbit{i}@localhost",
                amqp_port=ports[3 * i - 2],
                mqtt_port=ports[3 * i - 1],
                dist_port=ports[3 * i],
                directory=self.base_dir / f"node{i}",
            )
            for i in range(1, self.SIZE + 1)
        ]

    # ----------------------------------------------------------------- public API
    def node(self, index: int) -> RabbitNode:
        if not 1 <= index <= self.SIZE:
            raise ValueError(f"node index must be 1..{self.SIZE}, got {index}")
        return self.nodes[index - 1]

    def mqtt_port(self, index: int) -> int:
        return self.node(index).mqtt_port

    def start(self) -> None:
        """Start epmd and three nodes in parallel, join 2 and 3 to 1, wait for MQTT everywhere."""
        began = time.monotonic()
        atexit.register(self.stop)
        self._prepare_files()
        self._start_epmd()
        for node in self.nodes:
            self._spawn(node)
        self._parallel(self._wait_booted, self.nodes)
        seed, joiners = self.nodes[0], self.nodes[1:]
        self._parallel(lambda n: self.ctl(n.index, "stop_app"), joiners)
        for node in joiners:  # joins one at a time: concurrent mnesia joins are not supported
            self.ctl(node.index, "join_cluster", seed.name)
        self._parallel(lambda n: self.ctl(n.index, "start_app"), joiners)
        self._parallel(self._wait_booted, joiners)
        self.wait_running(set(range(1, self.SIZE + 1)))
        self.start_seconds = time.monotonic() - began

    def kill(self, index: int) -> int:
        """SIGKILL the node's Erlang VM (beam.smp, not the wrapper shell); return the killed pid."""
        node = self.node(index)
        pid = node.beam_pid()
        if pid is None:
            raise RabbitClusterError(
                f"{node.name} has no running beam.smp to kill\n{node.log_tail()}"
            )
        os.kill(pid, signal.SIGKILL)
        wait_until(f"{node.name} beam.smp pid {pid} to exit", lambda: not _pid_alive(pid), 10)
        if node.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=10)
        node.pid_file.unlink(missing_ok=True)
        return pid

    def restart(self, index: int) -> None:
        """Boot a killed/stopped node again and wait until the cluster lists it as running."""
        node = self.node(index)
        if node.beam_pid() is not None:
            raise RabbitClusterError(f"{node.name} is still running; kill() it first")
        self._spawn(node)
        self._wait_booted(node)
        self.wait_running({index})

    def running_nodes(self, via: int | None = None) -> set[int]:
        """Indexes of the nodes that node ``via`` (default: first live node) sees as running."""
        if via is None:
            via = next((n.index for n in self.nodes if n.beam_pid() is not None), None)
            if via is None:
                return set()
        status = json.loads(self.ctl(via, "cluster_status", "--formatter", "json"))
        names = set(status.get("running_nodes", []))
        return {n.index for n in self.nodes if n.name in names}

    def wait_running(self, indexes: set[int], timeout: float | None = None) -> None:
        """Wait until every node in ``indexes`` is a running member of the cluster."""

        def tails() -> str:
            return "\n".join(self.node(i).log_tail() for i in sorted(indexes))

        wait_until(
            f"nodes {sorted(indexes)} running in the cluster",
            lambda: indexes <= self.running_nodes(),
            timeout or self.boot_timeout,
            tails,
            interval=0.5,
        )

    def ctl(self, index: int, *args: str, timeout: float | None = None) -> str:
        """Run ``rabbitmqctl -n NODE ARGS`` for node ``index``; return stdout or raise."""
        node = self.node(index)
        limit = timeout or self.ctl_timeout
        cmd = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node.name, "-q", *args]
        cmd += ["--timeout", str(int(limit))]
        env = self._env(node)
        try:
            done = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=limit + 15, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RabbitClusterError(f"{' '.join(cmd)} timed out\n{node.log_tail()}") from exc
        if done.returncode != 0:
            raise RabbitClusterError(
                f"{' '.join(cmd)} exited {done.returncode}: "
                f"{done.stderr.strip()}\n{node.log_tail()}"
            )
        return done.stdout

    def stop(self) -> None:
        """Stop every node and epmd, whatever state they are in. Safe to call more than once."""
        atexit.unregister(self.stop)
        for node in self.nodes:
            self._terminate(node)
        if self._epmd is not None:
            _end_process(self._epmd)
            self._epmd = None
        _kill_marked(self._marker)
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    def __enter__(self) -> RabbitCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- internals
    def _prepare_files(self) -> None:
        home = self.base_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        (self.base_dir / "rabbitmq-env.conf").write_text("")  # shadow /etc/rabbitmq's
        for node in self.nodes:
            (node.directory / "log").mkdir(parents=True, exist_ok=True)
            (node.directory / "mnesia").mkdir(exist_ok=True)
            (node.directory / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
            (node.directory / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
                f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}\n"
                "mqtt.allow_anonymous = true\n"
                "log.console = false\n"
                "log.file.level = info\n"
            )

    def _env(self, node: RabbitNode) -> dict[str, str]:
        d = node.directory
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.base_dir / "home"),
            MARKER_VAR: self._marker,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),  # absent on purpose
            "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "feature_flags"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": str(node.rabbit_log),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"{_LOOPBACK_DIST} {_SCHEDULERS}",
            "RABBITMQ_CTL_ERL_ARGS": _LOOPBACK_DIST,
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
        }

    def _start_epmd(self) -> None:
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        log = self._open_log(self.base_dir / "epmd.log")
        self._epmd = subprocess.Popen(
            [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env={**self._env(self.nodes[0])},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(
            f"epmd on 127.0.0.1:{self.epmd_port}",
            lambda: port_open(self.epmd_port),
            10,
            lambda: _tail(self.base_dir / "epmd.log"),
        )

    def _spawn(self, node: RabbitNode) -> None:
        node.pid_file.unlink(missing_ok=True)
        node.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            cwd=node.directory,
            env=self._env(node),
            stdout=self._open_log(node.stdout_log),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait_booted(self, node: RabbitNode) -> None:
        """Booted = both listeners accept: the plugin's MQTT one, then AMQP (started last)."""

        def ready() -> bool:
            if node.process is not None and node.process.poll() is not None:
                raise RabbitClusterError(
                    f"{node.name} exited with {node.process.returncode} "
                    f"while booting\n{node.log_tail()}"
                )
            return port_open(node.mqtt_port) and port_open(node.amqp_port)

        wait_until(
            f"{node.name} listeners on 127.0.0.1:{node.mqtt_port},{node.amqp_port}",
            ready,
            self.boot_timeout,
            node.log_tail,
            interval=0.2,
        )

    def _terminate(self, node: RabbitNode) -> None:
        pid = node.beam_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if node.process is not None:
            _end_process(node.process)
            node.process = None
        node.pid_file.unlink(missing_ok=True)

    def _open_log(self, path: Path) -> IO[bytes]:
        handle = path.open("ab")
        self._logs.append(handle)
        return handle

    @staticmethod
    def _parallel(func: Callable[[RabbitNode], _T], nodes: list[RabbitNode]) -> list[_T]:
        if not nodes:
            return []
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            return list(pool.map(func, nodes))  # re-raises the first failure


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _end_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate, then kill, a child process and its session; always reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the session


def _marked_pids(marker: str) -> Iterator[int]:
    needle = f"{MARKER_VAR}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    yield int(entry.name)
            except OSError:
                continue


def _kill_marked(marker: str) -> None:
    """SIGKILL every process that inherited this cluster's marker variable, and wait for it."""
    pids = list(_marked_pids(marker))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(RabbitClusterError):
        wait_until("marked processes to exit", lambda: not any(map(_pid_alive, pids)), 10)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python3 -m tests.support.rabbitmq install")
    try:
        ensure_installed()
    except RabbitClusterError as exc:
        sys.exit(f"rabbitmq-server: {exc}")
