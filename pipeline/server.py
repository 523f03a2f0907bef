"""A tracking server a team shares: `mlflow server` on PostgreSQL, with logins (MLflow's
basic-auth app) and artifacts served through the server.

    python -m pipeline.server start     # make server: PostgreSQL (if local), then mlflow server
    python -m pipeline.server stop      # make server-stop: both, by the PIDs they recorded
    python -m pipeline.server status
    python -m pipeline.server optuna-url  # the study database's URL, for sweep=optuna_shared
    python -m pipeline.server add-user NAME [--permission READ|EDIT|MANAGE] [--experiment E]
                                        # make server-user NAME=…: an admin creates a login

Without $PIPELINE_SERVER_DATABASE_URL it creates a PostgreSQL cluster in .server/postgres
(git-ignored) with this machine's `initdb` and `pg_ctl` (as the `postgres` user when run as
root), listening on 127.0.0.1 only, with the databases `mlflow` (runs), `mlflow_auth`
(logins) and `optuna` (shared sweeps' studies: `optuna-url` prints its URL). With it, that
database holds the runs, and $PIPELINE_SERVER_AUTH_DATABASE_URL (else an SQLite file in
.server/) the logins. Artifacts go to .server/artifacts, or to any MLflow
artifact URI in $PIPELINE_SERVER_ARTIFACTS (e.g. s3://bucket/mlflow).

Passwords come from the environment (MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY,
PIPELINE_SERVER_PG_PASSWORD); what is not set is generated once into .server/secrets.env (mode
600, git-ignored), never into the repository's config. Users then set MLFLOW_TRACKING_USERNAME
and MLFLOW_TRACKING_PASSWORD, and `tracking.uri=http://HOST:PORT`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipeline.plumbing.errors import PipelineError, without_password
from pipeline.plumbing.files import write_text
from pipeline.plumbing.paths import project_root
from pipeline.plumbing.process import skip_last_collection

SECRETS = (
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "PIPELINE_SERVER_PG_PASSWORD",
)
ADMIN = "admin"
AUTH_CACHE_SECONDS = 60  # how long a login that passed the password check is remembered
PG_USER = "mlflow"


def setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


def server_dir() -> Path:
    return Path(setting("PIPELINE_SERVER_DIR", str(project_root() / ".server"))).resolve()


def host() -> str:
    return setting("PIPELINE_SERVER_HOST", "127.0.0.1")


def port() -> int:
    return int(setting("PIPELINE_SERVER_PORT", "5050"))


def pg_port() -> int:
    return int(setting("PIPELINE_SERVER_PG_PORT", "5433"))


def uri() -> str:
    return f"http://{host()}:{port()}"


def load_secrets(folder: Path) -> dict[str, str]:
    """Each secret from the environment, else from .server/secrets.env (made on first use)."""
    path = folder / "secrets.env"
    stored = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            stored[name] = value
    missing = [name for name in SECRETS if not os.environ.get(name) and name not in stored]
    if missing:
        stored.update({name: secrets.token_urlsafe(24) for name in missing})
        folder.mkdir(parents=True, exist_ok=True)
        write_text(path, "".join(f"{name}={stored[name]}\n" for name in SECRETS))
        path.chmod(0o600)
    return {name: os.environ.get(name) or stored[name] for name in SECRETS}


def as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


PG_LIBRARY = Path("/usr/lib/postgresql")  # Debian's packages: <version>/bin, not on PATH


def pg_binary(name: str, library: Path = PG_LIBRARY) -> str:
    """`initdb` or `pg_ctl`: on PATH, else the newest version's in Debian's folder, else the
    bare name (which then fails with what to install)."""
    if shutil.which(name):
        return name
    versions = [path for path in library.glob(f"*/bin/{name}") if path.parts[-3].isdigit()]
    newest = max(versions, key=lambda path: int(path.parts[-3]), default=None)
    return str(newest) if newest else name


def pg_tool(args: list[str], what: str) -> None:
    args = [pg_binary(args[0]), *args[1:]]
    try:
        done = subprocess.run(as_postgres(args), capture_output=True, text=True)
    except FileNotFoundError as error:
        raise PipelineError(
            f"{error.filename} is not installed: install PostgreSQL's server binaries (Debian: "
            "`apt install postgresql`; macOS: `brew install postgresql@15`), or set "
            "PIPELINE_SERVER_DATABASE_URL to a database you have"
        ) from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        hint = ""
        if os.geteuid() == 0 and "ermission denied" in " ".join(tail):
            hint = " (run as root, PostgreSQL runs as the postgres user, who must reach the folder)"
        raise PipelineError(f"{what} failed: {' '.join(tail)}{hint}")


def start_postgres(folder: Path, password: str) -> None:
    """The local cluster: created on first use, started unless its postmaster is alive. Its
    folder (data, log, socket) belongs to the user PostgreSQL runs as."""
    home = folder / "postgres"
    data = home / "data"
    if not (data / "PG_VERSION").is_file():
        home.mkdir(parents=True, exist_ok=True)
        pwfile = home / "pg.pw"
        write_text(pwfile, password + "\n")
        if os.geteuid() == 0:
            os.chown(home, *postgres_ids())
            os.chown(pwfile, *postgres_ids())
        try:
            pg_tool(
                ["initdb", "-D", str(data), "-U", PG_USER, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale"],
                "initdb",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
    if postgres_pid(data) is None:
        options = f"-h 127.0.0.1 -p {pg_port()} -k {home}"
        pg_tool(
            ["pg_ctl", "-D", str(data), "-l", str(home / "log"), "-o", options,
             "-w", "-t", "60", "start"],
            f"starting PostgreSQL on 127.0.0.1:{pg_port()} (log: {home / 'log'})",
        )  # fmt: skip
    create_databases(password)


def postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def postgres_pid(data: Path) -> int | None:
    """The postmaster's PID from its own PID file, if that process is alive."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if running(pid) else None


def create_databases(password: str) -> None:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=pg_port(), user=PG_USER, password=password, dbname="postgres"
    )
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction only
    try:
        with connection.cursor() as cursor:
            for name in ("mlflow", "mlflow_auth", "optuna"):
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def local_url(database: str, password: str) -> str:
    return f"postgresql+psycopg2://{PG_USER}:{password}@127.0.0.1:{pg_port()}/{database}"


def start() -> None:
    folder = server_dir()
    keys = load_secrets(folder)
    store = os.environ.get("PIPELINE_SERVER_DATABASE_URL")
    if not store:  # also when MLflow runs on: its database may have been stopped alone
        start_postgres(folder, keys["PIPELINE_SERVER_PG_PASSWORD"])
    if mlflow_pid(folder) is not None:
        print(f"server: already running at {uri()} (pid {mlflow_pid(folder)})")
        return
    if store:
        auth = setting("PIPELINE_SERVER_AUTH_DATABASE_URL", f"sqlite:///{folder / 'auth.db'}")
    else:
        store = local_url("mlflow", keys["PIPELINE_SERVER_PG_PASSWORD"])
        auth = local_url("mlflow_auth", keys["PIPELINE_SERVER_PG_PASSWORD"])
    artifacts = setting("PIPELINE_SERVER_ARTIFACTS", str(folder / "artifacts"))
    ini = folder / "basic_auth.ini"
    write_text(
        ini,
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {auth}\nadmin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each login is checked by a deliberately slow password hash, tens of milliseconds of
        # the server's CPU per request, and a training makes hundreds of requests. A check
        # that passed is remembered for a minute (MLflow's own cache, per server worker): a
        # changed password or a deleted user is refused on every worker within that minute.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n",
    )
    ini.chmod(0o600)
    env = {**os.environ, **keys, "MLFLOW_AUTH_CONFIG_PATH": str(ini)}
    # MLflow 3 also starts a job runner and three task consumers for its GenAI jobs, four more
    # processes (seconds of CPU to start, memory held) that runs of this pipeline never use.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "basic-auth",
        "--backend-store-uri", store, "--artifacts-destination", artifacts, "--serve-artifacts",
        "--host", host(), "--port", str(port()), "--workers", "2",
    ]  # fmt: skip
    with open(folder / "mlflow.log", "ab") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=log, start_new_session=True, cwd=folder
        )
    write_text(folder / "mlflow.pid", f"{process.pid}\n")
    wait_healthy(process, folder / "mlflow.log")
    print(f"server: MLflow at {uri()} (pid {process.pid}); runs in {without_password(store)}")
    print(f"server: log in as {ADMIN} with MLFLOW_AUTH_ADMIN_PASSWORD from {folder}/secrets.env")


def wait_healthy(process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise PipelineError(f"mlflow server exited ({process.returncode}): {' / '.join(tail)}")
        try:
            with urllib.request.urlopen(f"{uri()}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise PipelineError(f"mlflow server did not answer on {uri()} within {timeout:.0f} s ({log})")


def mlflow_pid(folder: Path) -> int | None:
    try:
        pid = int((folder / "mlflow.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if running(pid) else None


def running(pid: int) -> bool:
    """Whether `pid` runs: an ended process nobody has reaped yet (a zombie) does not."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop() -> None:
    """The MLflow server (its whole process group, by the PID it recorded), then PostgreSQL."""
    folder = server_dir()
    pid = mlflow_pid(folder)
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            if not running(pid):
                break
            time.sleep(0.1)
        else:  # a loaded machine: its workers took over 10 s to end
            os.killpg(pid, signal.SIGKILL)
            for _ in range(50):
                if not running(pid):
                    break
                time.sleep(0.1)
        print(f"server: MLflow stopped (pid {pid})")
    (folder / "mlflow.pid").unlink(missing_ok=True)
    data = folder / "postgres" / "data"
    if postgres_pid(data) is not None:
        pg_tool(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"], "stopping PostgreSQL")
        print("server: PostgreSQL stopped")


def optuna_url() -> None:
    """Print the URL of the local cluster's `optuna` database (password included: it is for
    `export PIPELINE_OPTUNA_STORAGE=$(…)`, not for a log)."""
    if os.environ.get("PIPELINE_SERVER_DATABASE_URL"):
        raise PipelineError(
            "the runs are in your own database, so is the study's: set PIPELINE_OPTUNA_STORAGE "
            "to a database URL there (postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE)"
        )
    if postgres_pid(server_dir() / "postgres" / "data") is None:
        raise PipelineError("the local PostgreSQL is not running: start it with `make server`")
    print(local_url("optuna", load_secrets(server_dir())["PIPELINE_SERVER_PG_PASSWORD"]))


def status() -> None:
    folder = server_dir()
    pid = mlflow_pid(folder)
    print(f"server: MLflow {'running at ' + uri() + f' (pid {pid})' if pid else 'stopped'}")
    pg = postgres_pid(folder / "postgres" / "data")
    print(f"server: local PostgreSQL {f'running (pid {pg})' if pg else 'stopped'}")


def add_user(name: str, permission: str, experiment: str) -> None:
    """Create a login (password from $NEW_USER_PASSWORD, else asked) and give it `permission`
    on `experiment`; the admin's credentials come from MLFLOW_TRACKING_USERNAME/PASSWORD, else
    from .server/secrets.env."""
    from mlflow.server import get_app_client

    keys = load_secrets(server_dir())
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", ADMIN)
    os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", keys["MLFLOW_AUTH_ADMIN_PASSWORD"])
    password = os.environ.get("NEW_USER_PASSWORD") or getpass.getpass(f"password for {name}: ")
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        admin = get_app_client("basic-auth", tracking_uri=uri())
        try:
            admin.create_user(name, password)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            print(f"server: user {name} exists already; setting its permission")
        mlflow.set_tracking_uri(uri())
        found = mlflow.MlflowClient().get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id if found else mlflow.MlflowClient().create_experiment(experiment)
        )
        admin.grant_user_permission(name, "experiment", experiment_id, permission)
    except MlflowException as error:
        reason = str(error).splitlines()[0]
        raise PipelineError(f"the server at {uri()} refused: {reason}") from None
    print(f"server: user {name} has {permission} on experiment {experiment}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start")
    commands.add_parser("stop")
    commands.add_parser("status")
    commands.add_parser("optuna-url")
    user = commands.add_parser("add-user")
    user.add_argument("name")
    user.add_argument("--permission", default="READ", choices=["READ", "EDIT", "MANAGE"])
    user.add_argument("--experiment", default="mnist-from-scratch")
    args = parser.parse_args(argv)
    try:
        if args.command == "add-user":
            add_user(args.name, args.permission, args.experiment)
        else:
            actions = {"start": start, "stop": stop, "status": status, "optuna-url": optuna_url}
            actions[args.command]()
    except PipelineError as error:
        print(f"server: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    skip_last_collection()
    raise SystemExit(main())
