"""The local runtime: Postgres, MLflow and the api as child processes on loopback
(``harness.process.ChildProcess``: own process group, session id, killed with the harness)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from harness.errors import DependencyMissing, ServiceFailed
from harness.ports import free_port
from harness.process import ChildProcess, python_env
from harness.session import ENV_VAR, Session
from harness.stack.runtime.base import Runtime, Service, StackConfig

PG_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin",
             "/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin")


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


class LocalService(ChildProcess, Service):
    """A service of the stack as a child process. Processes have no container health check."""

    def health(self) -> str | None:
        return None


class LocalRuntime(Runtime):
    name = "local"

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pg_bin = find_pg_bin()
        self.pg_user = unprivileged_user()

    def start_postgres(self, config: StackConfig) -> LocalService:
        workdir = self.session.mkdtemp("postgres")
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
            env={**env, ENV_VAR: self.session.id}, cwd=workdir, user=self.pg_user, capture_output=True, text=True,
            timeout=120)
        pwfile.unlink()
        if result.returncode != 0:
            raise ServiceFailed("initdb to succeed", f"exit {result.returncode}: {result.stderr.strip()[-500:]}",
                                "check that the data dir's filesystem allows the postgres user to write")
        port = free_port()
        argv = [str(self.pg_bin / "postgres"), "-D", str(data), "-p", str(port), "-k", str(workdir),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]
        svc = LocalService("postgres", argv, env=env, cwd=workdir, session=self.session, user=self.pg_user,
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

    def start_mlflow(self, config: StackConfig, db: tuple[str, int]) -> LocalService:
        workdir = self.session.mkdtemp("mlflow")
        port = free_port()
        env = {
            **python_env(workdir),
            "MLFLOW_BACKEND_STORE_URI": config.dsn(db, "mlflow"),
            "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": str(config.mlflow_workers),
            "MLFLOW_ARTIFACTS_DESTINATION": str(workdir / "artifacts"),
            **dict(config.mlflow_env),
        }
        svc = LocalService("mlflow", delayed([sys.executable, "-m", "services.mlflow.entrypoint"],
                                             config.delay_of("mlflow")), env=env, cwd=workdir,
                           session=self.session, ports=(port,), url=f"http://127.0.0.1:{port}/mlflow")
        svc.host_port = port
        svc.start()
        return svc

    def start_api(self, config: StackConfig, db: tuple[str, int], mlflow: tuple[str, int]) -> LocalService:
        workdir = self.session.mkdtemp("api")
        port = free_port()
        env = {
            **python_env(workdir),
            "API_DATABASE_URL": config.dsn(db, "api"),
            "API_MLFLOW_URL": f"http://{mlflow[0]}:{mlflow[1]}/mlflow",
            "API_HOST": "127.0.0.1", "API_PORT": str(port),
            **dict(config.api_env),
        }
        svc = LocalService("api", delayed([sys.executable, "-m", "services.api"], config.delay_of("api")), env=env,
                           cwd=workdir, session=self.session,
                           ports=(port,), url=f"http://127.0.0.1:{port}")
        svc.host_port = port
        svc.start()
        return svc
