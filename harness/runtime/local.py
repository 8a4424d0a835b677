"""The local runtime: Postgres, MLflow and the api as child processes on loopback.

Each child runs in its own process group (so kill, freeze and resume reach its workers and
backends), carries HARNESS_RUN_ID (so the reaper finds it after a crash), gets SIGKILL if
the harness dies (PR_SET_PDEATHSIG), and writes its log into the run's temp dir.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from harness.errors import DependencyMissing, HarnessError, ServiceFailed
from harness.ports import free_port, release
from harness.runs import ENV_VAR, Run, tree
from harness.runtime.base import Runtime, Service, StackConfig
from harness.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
PG_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin",
             "/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def find_pg_bin() -> Path:
    """The directory holding initdb and postgres: PATH first, then the usual distribution places."""
    candidates = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    for pattern in PG_SEARCH:
        candidates += sorted((Path(p) for p in glob.glob(pattern)), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "postgres").exists():
            return c
    raise DependencyMissing(
        "PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin",
        "none found", "install them: apt-get install postgresql (Debian/Ubuntu), "
        "dnf install postgresql-server (Fedora), brew install postgresql@15 (macOS)")


def unprivileged_user() -> str | None:
    """Postgres refuses to run as root; pick an unprivileged account when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise DependencyMissing("an unprivileged user to run Postgres as (running as root)", "no postgres or nobody",
                            "create one: useradd --system postgres")


def delayed(argv: list[str], seconds: float) -> list[str]:
    """Fault "slow start": the command starts only after ``seconds`` (the process exists meanwhile)."""
    if not seconds:
        return argv
    return ["sh", "-c", f'sleep {seconds:g}; exec "$@"', "slow-start", *argv]


def python_env(workdir: Path) -> dict[str, str]:
    """A clean environment for a Python child of the harness: this repo importable, temp files in ``workdir``."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "SSL_CERT_FILE")}
    return {**keep, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "TMPDIR": str(workdir)}


class LocalProcess(Service):
    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, url: str,
                 run: Run, user: str | None = None, stop_signal: int = signal.SIGTERM,
                 ports: tuple[int, ...] = ()) -> None:
        self.name, self.argv, self.env, self.cwd, self.url = name, argv, env, cwd, url
        self.run, self.user, self.stop_signal, self.ports = run, user, stop_signal, ports
        self.log_path = cwd / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.host_port = ports[0] if ports else 0
        self.paused = False
        self.starts = 0

    @property
    def ident(self) -> str:  # type: ignore[override]
        return str(self.proc.pid) if self.proc else "-"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        if self.is_running():
            raise HarnessError(f"{self.name} stopped before start", f"pid {self.pid} running",
                               "call stop() or kill() first")
        env = {**self.env, ENV_VAR: self.run.run_id}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it; closed below
        try:
            self.proc = subprocess.Popen(
                self.argv, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                process_group=0, user=self.user, preexec_fn=_die_with_parent)
        finally:
            log.close()
        self.paused = False
        self.starts += 1

    def logs(self, tail: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> str:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        if code is not None:
            return f"exited({code})"
        return "paused" if self.paused else "running"

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def ensure_running(self, allow_unhealthy: bool = False) -> None:
        """Fatal to waits: a child that exited will not become ready."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceFailed(f"{self.name} running", f"it exited with code {self.proc.returncode}",
                                f"its log ends with:\n{self.logs(30)}")

    def _group(self, signum: int) -> None:
        """Signal the whole tree: the leader first (so it forks no new child), then the rest."""
        if self.proc is None:
            return
        members = tree({self.proc.pid})
        for pid in [self.proc.pid] + sorted(members - {self.proc.pid}):
            try:
                os.kill(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        self._group(signal.SIGCONT)
        self._group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self.paused = False

    def pause(self) -> None:
        self._group(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._group(signal.SIGCONT)
        self.paused = False

    def stop(self, grace: float) -> int | None:
        if self.proc is None:
            return None
        members = tree({self.proc.pid})
        if self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.signal(self.stop_signal)
            try:
                wait_until(self.proc.poll, until=lambda code: code is not None, timeout=grace, interval=0.05,
                           what=f"{self.name} to exit after {signal.Signals(self.stop_signal).name}")
            except HarnessError:
                pass
        self._group(signal.SIGKILL)
        for pid in members - {self.proc.pid}:  # stragglers reparented away from a dead leader
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()
        return self.proc.returncode

    def close(self, grace: float) -> None:
        self.stop(grace)
        for port in self.ports:
            release(port)


class LocalRuntime(Runtime):
    name = "local"

    def __init__(self, run: Run) -> None:
        self.run = run
        self.pg_bin = find_pg_bin()
        self.pg_user = unprivileged_user()

    def start_postgres(self, config: StackConfig) -> LocalProcess:
        workdir = self.run.mkdtemp("postgres")
        data = workdir / "data"
        pwfile = workdir / "pwfile"
        pwfile.write_text(config.password + "\n")
        if self.pg_user:
            pw = pwd.getpwnam(self.pg_user)
            os.chown(workdir, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        env = {"PATH": f"{self.pg_bin}:{os.environ.get('PATH', '')}", "LANG": "C.UTF-8", "TMPDIR": str(workdir)}
        result = subprocess.run(
            [str(self.pg_bin / "initdb"), "-D", str(data), "-U", config.user, f"--pwfile={pwfile}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
            env={**env, ENV_VAR: self.run.run_id}, cwd=workdir, user=self.pg_user, capture_output=True, text=True,
            timeout=120)
        pwfile.unlink()
        if result.returncode != 0:
            raise ServiceFailed("initdb to succeed", f"exit {result.returncode}: {result.stderr.strip()[-500:]}",
                                "check that the data dir's filesystem allows the postgres user to write")
        port = free_port()
        argv = [str(self.pg_bin / "postgres"), "-D", str(data), "-p", str(port), "-k", str(workdir),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]
        svc = LocalProcess("postgres", argv, env=env, cwd=workdir, run=self.run, user=self.pg_user,
                           stop_signal=signal.SIGINT, ports=(port,),
                           url=f"postgresql://{config.user}:{config.password}@127.0.0.1:{port}")
        svc.host_port = port
        if self.pg_user:
            pw = pwd.getpwnam(self.pg_user)
            svc.log_path.touch()
            os.chown(svc.log_path, pw.pw_uid, pw.pw_gid)
        svc.start()
        return svc

    def dsn(self, postgres: Service, config: StackConfig, database: str) -> str:
        return f"{postgres.url}/{database}"

    def address(self, service: Service) -> tuple[str, int]:
        return ("127.0.0.1", service.host_port)

    def proxy_host(self) -> str:
        return "127.0.0.1"

    def start_mlflow(self, config: StackConfig, db: tuple[str, int]) -> LocalProcess:
        workdir = self.run.mkdtemp("mlflow")
        port = free_port()
        env = {
            **python_env(workdir),
            "MLFLOW_BACKEND_STORE_URI": config.dsn(db, "mlflow"),
            "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": str(config.mlflow_workers),
            "MLFLOW_ARTIFACTS_DESTINATION": str(workdir / "artifacts"),
            **dict(config.mlflow_env),
        }
        svc = LocalProcess("mlflow", delayed([sys.executable, "-m", "services.mlflow.entrypoint"],
                                             config.delay_of("mlflow")), env=env, cwd=workdir,
                           run=self.run, ports=(port,), url=f"http://127.0.0.1:{port}/mlflow")
        svc.host_port = port
        svc.start()
        return svc

    def start_api(self, config: StackConfig, db: tuple[str, int], mlflow: tuple[str, int]) -> LocalProcess:
        workdir = self.run.mkdtemp("api")
        port = free_port()
        env = {
            **python_env(workdir),
            "API_DATABASE_URL": config.dsn(db, "api"),
            "API_MLFLOW_URL": f"http://{mlflow[0]}:{mlflow[1]}/mlflow",
            "API_HOST": "127.0.0.1", "API_PORT": str(port),
            **dict(config.api_env),
        }
        svc = LocalProcess("api", delayed([sys.executable, "-m", "services.api"], config.delay_of("api")), env=env,
                           cwd=workdir, run=self.run,
                           ports=(port,), url=f"http://127.0.0.1:{port}")
        svc.host_port = port
        svc.start()
        return svc
