"""A real PostgreSQL server for tests, started from its own binaries (no Docker).

Fixtures (made available to every test by ``tests/conftest.py``):

* ``pg_server`` (session): one running :class:`PgServer` -- ``initdb`` into a temporary
  directory, ``postgres`` listening on 127.0.0.1:<free port> and a private Unix socket
  directory, stopped by PID at the end of the session.
* ``postgres_url`` (function): the URL of a fresh database with the ChargeTracker schema
  already migrated (``CREATE DATABASE ... TEMPLATE`` of a migrated template, made ahead
  in a background thread), dropped (in the background) after the test. Open it with ``open_store(postgres_url)`` or hand it to a
  subprocess (Kafka workers, API server).

More databases in one test: ``pg_server.fresh_database()`` (migrated; give it back with
``pg_server.discard(url)``) or ``pg_server.create_database(template=None)`` (empty,
unmigrated; ``pg_server.drop_database(name)``). ``pg_server.url(dbname)`` builds a URL,
``pg_server.admin(sql)`` runs superuser statements. For a server of your own (e.g. to
stop and restart it under a running store: ``stop()`` / ``start()``, same port and data)
use ``start_postgres()`` and ``cleanup()`` it, also outside pytest. Start servers from the
main thread if you can: only then are they shut down when the test process is killed.

PostgreSQL refuses to run as root. As root (CI), the server runs as the ``postgres``
system user, created with ``useradd`` when absent. The binaries come from
``$CT_PG_BINDIR``, else ``/usr/lib/postgresql/15/bin`` (else the newest
``/usr/lib/postgresql/*/bin``, else ``pg_config --bindir``). When none is found the
PostgreSQL tests skip with that reason -- except under CI (``$CI`` set), where they fail.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PgServer", "TEMPLATE_DB", "find_pg_bindir", "pg_server", "postgres_url",
           "require_postgres", "start_postgres"]

PREFERRED_MAJOR = 15
#: The migrated template database ``postgres_url`` copies.
TEMPLATE_DB = "ct_template"
SUPERUSER = "postgres"
_RUN_AS = "postgres"

# Server settings for throwaway test clusters: durability off (the data dies with the
# test run anyway), no JIT (compiling plans costs more than it saves on test sizes).
_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "max_wal_size": "2GB",
    "checkpoint_timeout": "30min",
    "jit": "off",
    "log_min_messages": "warning",
    "logging_collector": "off",
    "timezone": "UTC",
}


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb`` and ``postgres``, or None."""
    candidates: list[Path] = []
    if os.environ.get("CT_PG_BINDIR"):
        candidates.append(Path(os.environ["CT_PG_BINDIR"]))
    candidates.append(Path(f"/usr/lib/postgresql/{PREFERRED_MAJOR}/bin"))
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                      reverse=True)
    candidates.extend(versions)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            candidates.append(Path(out))
    for c in candidates:
        if (c / "initdb").is_file() and (c / "postgres").is_file():
            return c
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _service_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", _RUN_AS], check=True,
                       capture_output=True)
        return pwd.getpwnam(_RUN_AS)


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig INT --``: if the test process dies without cleaning up
    (SIGKILL, CI timeout) the kernel sends the server SIGINT (fast shutdown) instead of
    leaving it orphaned. The signal follows the *thread* that started the server, so only
    the main thread uses it (a helper thread may end before the server should)."""
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "INT", "--"] if setpriv else []


class PgServer:
    """One PostgreSQL cluster in a temporary directory, run as a child process.

    ``start()`` runs ``initdb`` the first time; ``stop()`` shuts the server down by its PID
    (SIGINT = fast shutdown, escalating to SIGQUIT / SIGKILL) and keeps the data, so
    ``start()`` can bring the same cluster back on the same port; ``cleanup()`` stops it
    and removes the directory.
    """

    def __init__(self, bindir: Path, base_dir: Path | None = None, *,
                 settings: dict[str, str] | None = None) -> None:
        self.bindir = Path(bindir)
        self.base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="ct-pg-"))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log_path = self.base / "postgres.log"
        self.host = "127.0.0.1"
        self.port = 0
        self.settings = {**_SETTINGS, **(settings or {})}
        self.user = _service_user()
        self.proc: subprocess.Popen[bytes] | None = None
        self._counter = itertools.count(1)
        self._template_lock = threading.Lock()
        self._prefetch_lock = threading.Lock()
        self._template_ready = False
        # One background thread creates the next test database while a test runs and
        # drops used ones (DROP DATABASE forces a checkpoint): tests do not wait for either.
        self._bg: concurrent.futures.ThreadPoolExecutor | None = None
        self._next: concurrent.futures.Future[str] | None = None

    # -- process control -----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _popen_kw(self) -> dict[str, object]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        kw: dict[str, object] = {"cwd": str(self.base), "env": env}
        if self.user is not None:
            env.update(HOME=str(self.base), USER=self.user.pw_name, LOGNAME=self.user.pw_name)
            kw.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return kw

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _check_reachable(self) -> None:
        # The server user must be able to traverse every parent of the base directory
        # (pytest's tmp_path, mode 0700 and owned by root, is not).
        if self.user is None:
            return
        for parent in self.base.resolve().parents:
            st = parent.stat()
            if st.st_mode & 0o001 or st.st_uid == self.user.pw_uid or (
                    st.st_gid == self.user.pw_gid and st.st_mode & 0o010):
                continue
            raise RuntimeError(
                f"{parent} is not reachable by user {self.user.pw_name!r} the server runs "
                "as; use a base directory under /tmp (the default)")

    def _initdb(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        self.socket_dir.mkdir(exist_ok=True)
        for p in (self.base, self.socket_dir):
            self._chown(p)
        key = (str(self.bindir), self.user.pw_uid if self.user else None)
        pristine = _PRISTINE.get(key)
        if pristine is not None and pristine.is_dir() and self._copy(pristine, self.data_dir):
            return  # a copy of a fresh cluster is much cheaper than another initdb
        res = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120, **self._popen_kw(),  # type: ignore[arg-type]
        )
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        pristine = Path(tempfile.mkdtemp(prefix="ct-pg-pristine-"))
        self._chown(pristine)
        if self._copy(self.data_dir, pristine / "data"):
            _PRISTINE[key] = pristine / "data"
        else:
            shutil.rmtree(pristine, ignore_errors=True)

    def _copy(self, src: Path, dst: Path) -> bool:
        # As the server user, so the copy keeps the owner and modes postgres insists on.
        res = subprocess.run(["cp", "-a", str(src), str(dst)], capture_output=True, timeout=120,
                             **self._popen_kw())  # type: ignore[arg-type]
        return res.returncode == 0

    def start(self, timeout: float = 60.0) -> PgServer:
        if self.running:
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        attempts = 1 if self.port else 5  # a fixed port (restart) is not re-picked
        for _attempt in range(attempts):
            if not self.port or attempts > 1:
                self.port = _free_port()
            if self._launch(timeout):
                return self
        raise RuntimeError(f"PostgreSQL did not start; log:\n{self.log()}")

    def _launch(self, timeout: float) -> bool:
        args = [*_pdeathsig_prefix(), str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-h", self.host, "-k", str(self.socket_dir)]
        for k, v in self.settings.items():
            args += ["-c", f"{k}={v}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, **self._popen_kw())  # type: ignore[arg-type]
        finally:
            log.close()
        _LIVE[id(self)] = self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False  # e.g. port taken meanwhile: caller retries
            if self._accepts_connections():
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"PostgreSQL not ready after {timeout} s; log:\n{self.log()}")

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, timeout: float = 30.0, *, immediate: bool = False) -> None:
        """Shut the server down by PID; data is kept (``start()`` brings it back).

        SIGINT (fast shutdown: clients disconnected, checkpoint written), escalating to
        SIGQUIT / SIGKILL; ``immediate`` starts at SIGQUIT (no checkpoint: crash
        recovery on the next start), for clusters about to be deleted.
        """
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        steps = [(signal.SIGINT, timeout), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)]
        for sig, wait in steps[1:] if immediate else steps:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def cleanup(self) -> None:
        if self._bg is not None:
            self._bg.shutdown(wait=True, cancel_futures=True)
            self._bg, self._next = None, None
        self.stop(immediate=True)
        _LIVE.pop(id(self), None)
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return "<no log>"

    # -- databases -----------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def admin(self, *statements: str) -> None:
        """Run statements (autocommit) as superuser on the ``postgres`` database."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            for s in statements:
                conn.execute(s)

    def create_database(self, name: str | None = None, *, template: str | None = TEMPLATE_DB,
                        ) -> str:
        """Create a database and return its URL. ``template=TEMPLATE_DB`` (default) copies
        the migrated ChargeTracker schema; ``template=None`` gives an empty database."""
        from psycopg import sql

        if template == TEMPLATE_DB:
            self.ensure_template()
        name = name or f"ct_test_{os.getpid()}_{next(self._counter)}"
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template or "template0"))
        self.admin(stmt.as_string(None))
        return self.url(name)

    def fresh_database(self) -> str:
        """URL of a new migrated database, usually created ahead of time in the
        background (the ``postgres_url`` fixture); give it back with :meth:`discard`."""
        self.ensure_template()
        with self._prefetch_lock:
            if self._bg is None:
                self._bg = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ct-pg")
            ready, self._next = self._next, None
            url = ready.result() if ready is not None else self.create_database()
            self._next = self._bg.submit(self.create_database)
        return url

    def discard(self, url: str) -> None:
        """Drop a database made by :meth:`fresh_database`, in the background."""
        name = url.rsplit("/", 1)[1]
        with self._prefetch_lock:
            if self._bg is None:
                self.drop_database(name)
            else:
                self._bg.submit(self.drop_database, name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        self.admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)).as_string(None))

    def ensure_template(self) -> None:
        """Create (once) the template database with every migration applied."""
        with self._template_lock:
            if self._template_ready:
                return
            from chargetracker.stores.postgresql import PostgresStore

            self.drop_database(TEMPLATE_DB)
            self.create_database(TEMPLATE_DB, template=None)
            PostgresStore(self.url(TEMPLATE_DB), pool_min_size=0).close()
            # No one may connect to it any more: CREATE DATABASE ... TEMPLATE needs that.
            self.admin(f'ALTER DATABASE "{TEMPLATE_DB}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
            self._template_ready = True


#: Servers started by this process, stopped at exit if a fixture could not do it.
_LIVE: dict[int, PgServer] = {}
#: (bindir, uid) -> a freshly initdb'ed data directory, copied for further servers.
_PRISTINE: dict[tuple[str, int | None], Path] = {}


@atexit.register
def _stop_all() -> None:  # pragma: no cover - safety net
    for server in list(_LIVE.values()):
        server.cleanup()
    for data in _PRISTINE.values():
        shutil.rmtree(data.parent, ignore_errors=True)


def start_postgres(base_dir: Path | None = None, **kw: object) -> PgServer:
    """Start a server (initdb into ``base_dir`` or a new temp dir); raises when the
    binaries are absent (in a test, call :func:`require_postgres` first to skip instead)."""
    bindir = find_pg_bindir()
    if bindir is None:
        raise RuntimeError(_missing_reason())
    return PgServer(bindir, base_dir, **kw).start()  # type: ignore[arg-type]


def _missing_reason() -> str:
    return (f"PostgreSQL server binaries not found (looked in $CT_PG_BINDIR, "
            f"/usr/lib/postgresql/{PREFERRED_MAJOR}/bin, /usr/lib/postgresql/*/bin, "
            "pg_config --bindir); install postgresql-15")


def require_postgres() -> Path:
    """The binaries' directory; skip the test (fail under CI) when there are none."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:  # pragma: no cover - part of the test extra
        reason = f"psycopg / psycopg_pool not installed ({exc}): pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    bindir = find_pg_bindir()
    if bindir is None:
        reason = _missing_reason()
        print(f"\n[tests.pg] {reason}", file=sys.stderr)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the PostgreSQL tests)")
        pytest.skip(reason)
    return bindir


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A running PostgreSQL server for the whole test session."""
    server = PgServer(require_postgres())
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh, migrated database, dropped after the test."""
    url = pg_server.fresh_database()
    try:
        yield url
    finally:
        pg_server.discard(url)
