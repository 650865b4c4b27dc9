"""Where runs are stored: the tracking URI, its checks, and the creation of a new sqlite store."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from optimizers.errors import ConfigError

BUSY_TIMEOUT_MS = 600_000  # how long a sqlite writer waits for another one (a big batch takes seconds)


def resolve_uri(configured: str | None) -> str:
    """The tracking URI, resolved once at launch: ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``,
    else ``sqlite:///<launch dir>/mlflow.db``. Relative sqlite paths become absolute, so every
    job of a sweep writes to the same database wherever it runs."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and not path.startswith("/") and path != ":memory:":
            uri = "sqlite:///" + str(Path(path).resolve())
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The file of a sqlite store's URI; None for other stores and in-memory sqlite."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    return Path(uri[len("sqlite:///") :])


def shown_uri(uri: str) -> str:
    """``uri`` as printed for the user: a sqlite file under the working directory relative to it."""
    return uri.replace("sqlite:///" + os.getcwd() + "/", "sqlite:///")


def experiment_name(configured: str) -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or configured


def runs_view(uri: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs in the model-training view, for a local ``mlflow ui``
    (MLflow 3.17 opens experiments in its GenAI view otherwise, and remembers the choice per browser)."""
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


def check_reachable(uri: str) -> None:
    """Fail fast, before any run exists, when the store cannot be used."""
    allowed = "sqlite:///<path>, http(s)://<mlflow server>, or a database URI such as postgresql://..."
    scheme = uri.split(":", 1)[0] if "://" in uri else ""
    if scheme == "sqlite":
        path = Path(uri[len("sqlite:///") :])
        if not writable_dir(path.parent):
            raise ConfigError(f"tracking.uri={uri} is unusable: directory {path.parent} is missing or not writable; allowed: {allowed}")
        if path.exists() and (why := unwritable_file(path)):
            raise ConfigError(f"tracking.uri={uri} is unusable: {path} cannot be written ({why}); allowed: a writable file, or {allowed}")
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                r.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ConfigError(f"tracking.uri={uri} is unreachable ({reason}); allowed: {allowed}") from None
    elif scheme in ("file", "") or scheme not in ("postgresql", "mysql", "mssql", "databricks") and "+" not in scheme:
        raise ConfigError(f"tracking.uri={uri} is not supported; allowed: {allowed}")


def writable_dir(folder: Path) -> bool:
    """Whether a file can be made in ``folder`` (tried, not guessed from its mode bits: root ignores
    them, a read-only mount or an immutable directory does not)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def unwritable_file(path: Path) -> str | None:
    """Why ``path`` cannot be opened for writing, or None when it can (nothing is written)."""
    try:
        os.close(os.open(path, os.O_RDWR))
        return None
    except OSError as e:
        return e.strerror or type(e).__name__


def check_artifact_root(uri: str, artifact_location: str) -> None:
    """Fail before any computing when a local artifact location cannot take a run's files."""
    folder = local_artifact_dir(artifact_location)
    if folder is None:
        return
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not writable_dir(folder):
        raise ConfigError(f"tracking.uri={uri}: its artifact directory {folder} is not writable; allowed: a writable directory "
                          "(or another tracking.experiment, whose artifacts go where the store is)")


@contextmanager
def creation_lock(uri: str):
    """Hold an exclusive lock on a sqlite store's directory while it is opened, so that a new store
    (and a new experiment in it) is created by exactly one process, however many start at once:
    the others wait, then find it made. Other stores need no lock (a server or a database serialises)."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    import fcntl

    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def mlflow_version() -> str:
    """The installed MLflow's version, without importing MLflow (~1.5 s)."""
    from importlib.metadata import version

    return version("mlflow")


def _schema_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "optbench-harness"


def seed_new_sqlite(uri: str) -> bool:
    """Create a new sqlite store as a copy of an empty one that this MLflow version made once and
    cached (``~/.cache/optbench-harness/mlflow-<version>.db``), instead of running MLflow's ~50
    schema migrations again (about 1 s, plus importing MLflow). The copy is what MLflow would have
    made, but for the Default experiment's artifact location and time, which are set as MLflow sets
    them here. Returns False, and leaves creation to MLflow, where the cache cannot be used. Call it
    under :func:`creation_lock`."""
    path = sqlite_file(uri)
    if path is None or path.exists() or not path.parent.is_dir():
        return False
    import fcntl
    import shutil
    import sqlite3
    import time

    try:
        cache = _schema_cache()
        cache.mkdir(parents=True, exist_ok=True)
        template = cache / f"mlflow-{mlflow_version()}.db"
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process makes the template
            if not template.exists():
                tmp = cache / f"making-{os.getpid()}.db"
                tmp.unlink(missing_ok=True)
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                store = SqlAlchemyStore(f"sqlite:///{tmp}", str(cache / "mlruns"))
                store.engine.dispose()
                os.replace(tmp, template)
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        shutil.copyfile(template, part)
        with sqlite3.connect(part) as db:
            now = int(time.time() * 1000)
            db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? WHERE experiment_id = 0",
                       (os.path.join(os.path.abspath("mlruns"), "0"), now, now))
        db.close()
        os.replace(part, path)
        return True
    except OSError:
        return False


def local_artifact_dir(artifact_uri: str | None) -> Path | None:
    """The directory of a local artifact location (a plain path or file://), else None."""
    if not artifact_uri:
        return None
    if artifact_uri.startswith("file://"):
        return Path(artifact_uri[len("file://") :])
    if "://" in artifact_uri or ":" in artifact_uri.split("/", 1)[0]:
        return None
    return Path(artifact_uri)
