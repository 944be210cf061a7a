"""The real LibreBooking (its PHP web app and a MariaDB of its own) on loopback, for tests and
demos, without systemd.

`start_librebooking` unpacks LibreBooking's source into a state directory, initialises a
private MariaDB there (TCP on 127.0.0.1 and a unix socket), loads the schema the way the web
installer does (plus the sample data: users ``admin``/``password`` and ``user``/``password``),
writes ``config/config.php`` with the web-services API on, and serves the app with PHP's
built-in server on a free loopback port. Every layout gets 1440 one-minute bookable time
blocks, so a reservation may start and end on any minute, in the given time zone.

Nothing is installed or registered globally: the processes are children of the caller (each in
a session of its own, and sent SIGTERM if the caller dies), their logs are files under the state
directory, and `LibreBooking.stop` ends them. Debian packages needed: php-cli php-mysql
php-mbstring php-xml php-gd php-curl php-intl mariadb-server mariadb-client smarty4 php-monolog
php-google-recaptcha php-gregwar-captcha.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zoneinfo
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from pcc.common.errors import PccError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SOURCE_ENV = "PCC_LIBREBOOKING_SOURCE"
APT_PACKAGES = (
    "php-cli php-mysql php-mbstring php-xml php-gd php-curl php-intl mariadb-server mariadb-client "
    "smarty4 php-monolog php-google-recaptcha php-gregwar-captcha"
)
API_PATH = "/Web/Services/index.php"
# The sample data's accounts (database_schema/sample-data-utf8.sql): admin is id 2, user id 1.
ADMIN = ("admin", "password")
USER = ("user", "password")
DB_NAME = "librebooking"
DB_USER = "lb_user"
PHP_WORKERS = 4
# Debian's autoloaders standing in for Composer's vendor/autoload.php (Smarty and Monolog are
# needed by the API itself; the captcha libraries only by web pages).
DEBIAN_AUTOLOADERS = {
    "/usr/share/php/smarty4/bootstrap.php": True,
    "/usr/share/php/Monolog/autoload.php": True,
    "/usr/share/php/ReCaptcha/autoload.php": False,
    "/usr/share/php/Gregwar/Captcha/autoload.php": False,
}
SMARTY_DIR = Path("/usr/share/php/smarty4")
# Small, and no durability: a test instance, thrown away.
MARIADB_TUNING = (
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=0",
    "--skip-innodb-doublewrite",
)
# sun_path holds 108 bytes; a longer socket path goes to a short directory under /tmp.
MAX_SOCKET_PATH = 100
# A child must not outlive us even if we are killed, and PHP's workers (forked by its server)
# must not outlive their master: each command runs under this watchdog, leader of the child's
# session, which ends the whole group (SIGTERM, then waits for the command) when its stdin, a
# pipe only we hold, reaches EOF (we closed it or died) or it gets SIGTERM itself; then it
# removes $PCC_LB_REMOVE_AFTER if set (MariaDB's scratch directory under /tmp).
_WATCHDOG = """
import os, signal, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
def end(*_):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
signal.signal(signal.SIGTERM, end)
def eof():
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=eof, daemon=True).start()
status = child.wait()
if os.environ.get("PCC_LB_REMOVE_AFTER"):
    import shutil
    shutil.rmtree(os.environ["PCC_LB_REMOVE_AFTER"], ignore_errors=True)
sys.exit(status)
"""
_WATCHED = (sys.executable, "-I", "-c", _WATCHDOG)


def source_archive() -> Path:
    """LibreBooking's source: ``$PCC_LIBREBOOKING_SOURCE`` (a ``.tar.gz`` or an unpacked
    checkout) if set, else the test fixture ``../shared/fixtures/librebooking-*.tar.gz`` next
    to the repository (the newest name if several)."""
    env = os.environ.get(SOURCE_ENV)
    if env:
        path = Path(env).expanduser()
        if path.is_dir() or (path.is_file() and path.name.endswith((".tar.gz", ".tgz"))):
            return path
        raise PccError(
            f"${SOURCE_ENV} is {env!r}, which is neither a LibreBooking .tar.gz nor a checkout "
            "directory; point it at one, or unset it to use the test fixture"
        )
    fixtures = REPO.parent / "shared" / "fixtures"
    found = sorted(fixtures.glob("librebooking-*.tar.gz"))
    if not found:
        raise PccError(
            f"LibreBooking's source is missing: no {fixtures}/librebooking-*.tar.gz; set "
            f"${SOURCE_ENV} to a LibreBooking .tar.gz or checkout directory"
        )
    return found[-1]


@dataclass
class LibreBooking:
    """A running LibreBooking: ``url`` is its web root, ``api`` its web-services base."""

    root: Path
    url: str
    api: str
    admin: tuple[str, str]
    user: tuple[str, str]
    db_port: int
    db_socket: Path
    timezone: str
    # The schedule new resources go in (`POST /Resources/` needs a scheduleId): the default
    # one, whose layout has the one-minute blocks, as every layout does.
    schedule_id: int
    _app: Path = field(repr=False)
    _php_port: int = field(repr=False)
    _php: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _mariadb: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _scratch: Path | None = field(default=None, repr=False)

    @property
    def php_log(self) -> Path:
        return self.root / "php.log"

    @property
    def mariadb_log(self) -> Path:
        return self.root / "mariadb.log"

    @property
    def app_log(self) -> Path:
        """LibreBooking's own log (Monolog; uncaught exceptions land here, not in PHP's)."""
        return self.root / "logs" / "app.log"

    def __enter__(self) -> LibreBooking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop PHP and MariaDB (idempotent); the state directory stays for inspection."""
        self.stop_web()
        if self._mariadb is not None:
            _terminate(self._mariadb, grace=15.0)
            self._mariadb = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def stop_web(self) -> None:
        """Stop only PHP's server (LibreBooking "down"); the database keeps running."""
        if self._php is not None:
            _terminate(self._php, grace=5.0)
            self._php = None

    def start_web(self) -> None:
        """Start PHP's server again on the same port and database; return once the API
        authenticates the admin."""
        if self._mariadb is None:
            raise PccError("LibreBooking's database is stopped; start a new instance instead")
        if self._php is not None and self._php.poll() is None:
            return
        self._php = _start_php(self._app, self._php_port, self.php_log)
        _wait_for_api(self, timeout=30.0)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of PHP's server log and of LibreBooking's log, for a failing test."""
        parts = []
        for path in (self.php_log, self.app_log):
            parts.append(f"--- {path} (last {lines} lines) ---\n{_tail(path, lines)}")
        if self._mariadb is not None and self._mariadb.poll() is not None:
            parts.append(f"--- {self.mariadb_log} (mariadbd exited) ---\n{_tail(self.mariadb_log, lines)}")
        return "\n".join(parts)

    def sql(self, statements: str) -> str:
        """Run SQL in LibreBooking's database as MariaDB's root; tab-separated output."""
        return _mysql(self.db_socket, statements, database=DB_NAME)


def start_librebooking(
    root: Path, *, source: Path | None = None, timezone: str = "UTC", log_level: str = "error"
) -> LibreBooking:
    """Unpack, configure and start LibreBooking under ``root`` (its earlier state there is
    replaced; ``root`` must not hold a running instance); return once its API authenticates
    the admin. ``timezone`` is the layouts', the users' and the application's time zone;
    ``log_level`` LibreBooking's own (``error`` logs uncaught exceptions and SQL errors,
    ``debug`` every request too)."""
    started = time.monotonic()
    if log_level not in ("none", "error", "debug"):
        raise PccError(f"LibreBooking's log level is none, error or debug, not {log_level!r}")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise PccError(f"unknown time zone {timezone!r} for LibreBooking") from err
    tools = _tools()
    source = source or source_archive()
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    app, datadir_link, logs = root / "librebooking", root / "mysql", root / "logs"
    for old in (app, logs):
        shutil.rmtree(old, ignore_errors=True)
    _remove(datadir_link)
    logs.mkdir()

    mysql_account = _mysql_account()
    scratch = _scratch_dir(root, mysql_account)
    base = scratch or root
    datadir, rundir = base / "mysql", base / "run"
    shutil.rmtree(rundir, ignore_errors=True)
    rundir.mkdir()
    if mysql_account is not None:
        os.chown(rundir, mysql_account.pw_uid, mysql_account.pw_gid)
    db_socket = rundir / "mysqld.sock"
    if scratch is not None:
        datadir_link.symlink_to(datadir)
    db_port, php_port = _free_port(), _free_port()
    db_password = secrets.token_hex(12)

    mariadb_log = (root / "mariadb.log").open("ab")
    install_db = subprocess.Popen(
        [
            tools["mariadb-install-db"],
            "--no-defaults",
            f"--datadir={datadir}",
            "--skip-test-db",
            "--skip-name-resolve",
            *_mysql_user_args(mysql_account, install=True),
            *MARIADB_TUNING,
        ],
        stdin=subprocess.DEVNULL,
        stdout=mariadb_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    instance: LibreBooking | None = None
    try:
        _unpack(source, app)
        _configure(app, root, timezone, db_port, db_password, php_port, log_level)
        if install_db.wait(timeout=120) != 0:
            raise PccError(
                f"mariadb-install-db failed (exit {install_db.returncode}); see {mariadb_log.name}"
            )
        log.debug("librebooking: unpacked and database initialised in %.1fs", time.monotonic() - started)
        mariadb = subprocess.Popen(
            [
                *_WATCHED,
                tools["mariadbd"],
                "--no-defaults",
                *_mysql_user_args(mysql_account, install=False),
                f"--datadir={datadir}",
                f"--socket={db_socket}",
                f"--pid-file={datadir / 'mariadbd.pid'}",
                "--bind-address=127.0.0.1",
                f"--port={db_port}",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                *MARIADB_TUNING,
            ],
            stdin=subprocess.PIPE,
            stdout=mariadb_log,
            env=dict(os.environ, PCC_LB_REMOVE_AFTER=str(scratch or "")),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        instance = LibreBooking(
            root=root,
            url=f"http://127.0.0.1:{php_port}",
            api=f"http://127.0.0.1:{php_port}{API_PATH}",
            admin=ADMIN,
            user=USER,
            db_port=db_port,
            db_socket=db_socket,
            timezone=timezone,
            schedule_id=0,
            _app=app,
            _php_port=php_port,
            _mariadb=mariadb,
            _scratch=scratch,
        )
        _wait_for_mariadb(mariadb, db_socket, root / "mariadb.log", timeout=60.0)
        log.debug("librebooking: mariadbd up after %.1fs", time.monotonic() - started)
        instance.schedule_id = _load_schema(app, db_socket, timezone, db_password)
        log.debug("librebooking: schema loaded after %.1fs", time.monotonic() - started)
        instance.start_web()
    except BaseException:
        if install_db.poll() is None:
            _terminate(install_db, grace=2.0)
        if instance is not None:
            instance.stop()
        elif scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        mariadb_log.close()
    log.info("librebooking: %s ready in %.1fs (state in %s)", instance.url, time.monotonic() - started, root)
    return instance


# -- pieces ---------------------------------------------------------------------------------


def _tools() -> dict[str, str]:
    found: dict[str, str] = {}
    missing = []
    for name in ("php", "mariadbd", "mariadb-install-db", "mariadb"):
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path:
            found[name] = path
        else:
            missing.append(name)
    missing += [path for path, needed in DEBIAN_AUTOLOADERS.items() if needed and not Path(path).exists()]
    if missing:
        raise PccError(
            f"LibreBooking needs {', '.join(missing)}: apt-get install --no-install-recommends {APT_PACKAGES}"
        )
    return found


def _mysql_account() -> pwd.struct_passwd | None:
    """The account mariadbd runs as: ``mysql`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mysql")
    except KeyError as err:
        raise PccError("no 'mysql' account to run MariaDB as: apt-get install mariadb-server") from err


def _mysql_user_args(account: pwd.struct_passwd | None, *, install: bool) -> list[str]:
    if account is not None:
        return [f"--user={account.pw_name}"]
    if install:
        # Let the invoking account in as MariaDB's root through the unix socket.
        return [f"--auth-root-socket-user={pwd.getpwuid(os.geteuid()).pw_name}"]
    return []


def _scratch_dir(root: Path, account: pwd.struct_passwd | None) -> Path | None:
    """None when MariaDB's data and socket can live in ``root/mysql`` and ``root/run``; else
    (the mysql account cannot reach ``root``, or the socket's path would be too long) a new
    directory under /tmp for them, removed at stop, that ``root/mysql`` links to."""
    if (account is None or _traversable(root, account)) and len(
        str(root / "run" / "mysqld.sock")
    ) <= MAX_SOCKET_PATH:
        return None
    scratch = Path(tempfile.mkdtemp(prefix="pcc-lb-"))
    os.chmod(scratch, 0o755)
    log.debug("librebooking: MariaDB's data and socket in %s, not under %s", scratch, root)
    return scratch


def _traversable(path: Path, account: pwd.struct_passwd) -> bool:
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file() or path.is_socket():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unpack(source: Path, app: Path) -> None:
    """The source's tree (a tarball's single top-level directory, or a checkout) as ``app``."""
    if source.is_dir():
        shutil.copytree(
            source, app, symlinks=True, ignore=shutil.ignore_patterns(".git", "tpl_c", "config.php")
        )
        return
    if not source.is_file():
        raise PccError(f"LibreBooking source {source} does not exist; see ${SOURCE_ENV}")
    unpacked = app.with_name(app.name + ".unpacking")
    shutil.rmtree(unpacked, ignore_errors=True)
    unpacked.mkdir()
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                safe = not name.is_absolute() and ".." not in name.parts
                if member.issym():
                    link = Path(member.linkname)
                    safe = safe and not link.is_absolute() and ".." not in link.parts
                elif not (member.isfile() or member.isdir()):
                    safe = False
                if not safe:
                    raise PccError(f"{source}: refusing to unpack member {member.name!r}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(unpacked, filter="data")
            else:
                tar.extractall(unpacked)  # members checked above
    except (tarfile.TarError, OSError) as err:
        raise PccError(f"cannot unpack LibreBooking source {source}: {err}") from err
    top = list(unpacked.iterdir())
    tree = top[0] if len(top) == 1 and top[0].is_dir() else unpacked
    if not (tree / "config" / "config.dist.php").is_file():
        raise PccError(f"{source} does not look like LibreBooking (no config/config.dist.php)")
    tree.rename(app)
    shutil.rmtree(unpacked, ignore_errors=True)


def _php_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _configure(
    app: Path, root: Path, timezone: str, db_port: int, db_password: str, php_port: int, log_level: str
) -> None:
    """config/config.php (config.dist.php plus overrides), the vendor/ stand-in, tpl_c/."""
    settings = {
        "default.timezone": timezone,
        "enable.email": "false",
        "script.url": f"http://127.0.0.1:{php_port}/Web",
        "registration.captcha.enabled": "false",
        "install.password": secrets.token_hex(12),
        "api|enabled": "true",
        "database|user": DB_USER,
        "database|password": db_password,
        "database|hostspec": f"127.0.0.1:{db_port}",
        "database|name": DB_NAME,
        "reservation|start.time.constraint": "none",
        "logging|folder": str(root / "logs"),
        "logging|level": log_level,
        "logging|sql": "false",
    }
    lines = ["", "// Overrides written by pcc.dev.librebooking for a loopback test instance."]
    for key, value in settings.items():
        index = "".join(f"[{_php_string(part)}]" for part in key.split("|"))
        lines.append(f"$conf['settings']{index} = {_php_string(value)};")
    dist = (app / "config" / "config.dist.php").read_text()
    (app / "config" / "config.php").write_text(dist.rstrip() + "\n" + "\n".join(lines) + "\n")

    autoload = app / "vendor" / "autoload.php"
    if not autoload.exists():
        autoload.parent.mkdir(parents=True, exist_ok=True)
        body = ["<?php", "// Debian's packages standing in for Composer's (pcc.dev.librebooking)."]
        for path, needed in DEBIAN_AUTOLOADERS.items():
            if needed or Path(path).exists():
                body.append(f"require_once {_php_string(path)};")
        autoload.write_text("\n".join(body) + "\n")
        smarty = app / "vendor" / "smarty" / "smarty" / "libs"
        if not smarty.exists():
            smarty.parent.mkdir(parents=True, exist_ok=True)
            smarty.symlink_to(SMARTY_DIR)
    (app / "tpl_c").mkdir(exist_ok=True)
    (app / "Web" / "uploads" / "images").mkdir(parents=True, exist_ok=True)


def _wait_for_mariadb(
    process: subprocess.Popen[bytes], db_socket: Path, log_path: Path, *, timeout: float
) -> None:
    """Until the server greets a client on its unix socket (it opens the socket when ready)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise PccError(f"mariadbd exited ({process.returncode}):\n{_tail(log_path, 20)}")
        if db_socket.exists():
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect(str(db_socket))
                if sock.recv(64):
                    return
        if time.monotonic() > deadline:
            raise PccError(f"mariadbd did not answer on {db_socket} within {timeout:.0f}s; see {log_path}")
        time.sleep(0.05)


def _mysql(db_socket: Path, sql: str, *, database: str | None = None, force: bool = False) -> str:
    """Run SQL through the mariadb client as MariaDB's root (unix-socket authentication)."""
    argv = [shutil.which("mariadb") or "/usr/bin/mariadb", "--no-defaults", f"--socket={db_socket}"]
    argv += ["--user=root", "--batch", *(["--force"] if force else [])]
    if database:
        argv.append(f"--database={database}")
    result = subprocess.run(argv, input=sql, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0 and not force:
        raise PccError(f"SQL failed in LibreBooking's database: {result.stderr.strip()}")
    if result.stderr.strip():
        log.debug("librebooking: SQL errors (ignored, as the installer does):\n%s", result.stderr.strip())
    return result.stdout


def _script(path: Path, replacements: dict[str, str]) -> str:
    """One installer script: its tokens replaced, split on ';' and filtered as
    Presenters/Install/Installer.php does, and run with foreign key checks off."""
    sql = path.read_text()
    for search, replace in replacements.items():
        sql = sql.replace(search, replace)
    statements = [s for s in sql.split(";") if len(s) > 3 and not s.lstrip().startswith("/*")]
    body = "".join(f"{s.strip()};\n" for s in statements)
    return f"-- {path.name}\nSET foreign_key_checks = 0;\n{body}SET foreign_key_checks = 1;\n"


def _upgrade_dirs(upgrades: Path) -> list[Path]:
    def version(p: Path) -> float:
        try:
            return float(p.name)
        except ValueError:
            return 0.0

    return sorted((p for p in upgrades.iterdir() if p.is_dir() and not p.name.startswith(".")), key=version)


def _load_schema(app: Path, db_socket: Path, timezone: str, db_password: str) -> int:
    """The installer's order (InstallFresh with database, user and sample data): create-db,
    create-schema, create-user, every upgrade's schema then data, create-data, sample data;
    then one-minute time blocks for every layout and the time zone everywhere. Returns the
    default schedule's id. A failing statement is logged and skipped where the installer
    would stop that script: the only ones (two ALTERs in 2.9 on tables that do not exist)
    come before more of 2.9's charset changes, which are then applied too."""
    schema = app / "database_schema"
    use = f"USE `{DB_NAME}`;\n"
    parts = [
        _script(schema / "create-db.sql", {"librebooking": DB_NAME}),
        use + _script(schema / "create-schema.sql", {}),
        use
        + _script(
            schema / "create-user.sql",
            {"librebooking": DB_NAME, "lb_user": DB_USER, "password": db_password},
        ),
    ]
    for upgrade in _upgrade_dirs(schema / "upgrades"):
        for name in ("schema.sql", "data.sql"):
            if (upgrade / name).is_file():
                parts.append(use + _script(upgrade / name, {}))
    parts.append(use + _script(schema / "create-data.sql", {"America/New_York": timezone}))
    if (schema / "sample-data-utf8.sql").is_file():
        parts.append(use + _script(schema / "sample-data-utf8.sql", {"librebooking": DB_NAME}))
    _mysql(db_socket, "".join(parts), force=True)

    tz = timezone.replace("'", "''")
    _mysql(
        db_socket,
        f"""
        SET SESSION max_recursive_iterations = 10000;
        DELETE FROM time_blocks;
        INSERT INTO time_blocks (label, end_label, availability_code, layout_id, start_time, end_time)
          WITH RECURSIVE minute (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM minute WHERE n < 1439)
          SELECT NULL, NULL, 1, layouts.layout_id, SEC_TO_TIME(n * 60), SEC_TO_TIME(((n + 1) % 1440) * 60)
          FROM layouts CROSS JOIN minute;
        UPDATE layouts SET timezone = '{tz}';
        UPDATE users SET timezone = '{tz}';
        """,
        database=DB_NAME,
    )
    check = _mysql(
        db_socket,
        "SELECT COUNT(*) FROM users WHERE username IN ('admin', 'user');"
        "SELECT COUNT(*) FROM time_blocks WHERE availability_code = 1;"
        "SELECT MIN(schedule_id) FROM schedules WHERE isdefault = 1;",
        database=DB_NAME,
    ).split()
    if len(check) != 6 or check[1] != "2" or check[3] == "0" or not check[5].isdigit():
        raise PccError(f"LibreBooking's schema did not load (users/blocks/schedule: {check})")
    return int(check[5])


def _start_php(app: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    tools = _tools()
    env = dict(os.environ, PHP_CLI_SERVER_WORKERS=str(PHP_WORKERS))
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [*_WATCHED, tools["php"], "-S", f"127.0.0.1:{port}", "-t", str(app)],
            cwd=app,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_api(instance: LibreBooking, *, timeout: float) -> None:
    """Until ``POST /Authentication/Authenticate`` says the admin is authenticated."""
    body = json.dumps({"username": instance.admin[0], "password": instance.admin[1]}).encode()
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        php = instance._php
        if php is None or php.poll() is not None:
            raise PccError(f"PHP's server for LibreBooking exited:\n{instance.log_tail(20)}")
        request = urllib.request.Request(
            f"{instance.api}/Authentication/Authenticate",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                text = response.read().decode(errors="replace")
            if json.loads(text).get("isAuthenticated") is True:
                return
            last = f"answer {text[:200]!r}"
        except (OSError, ValueError, AttributeError) as err:
            last = str(err)
        if time.monotonic() > deadline:
            raise PccError(
                f"LibreBooking's API did not authenticate the admin within {timeout:.0f}s ({last}):\n"
                f"{instance.log_tail(20)}"
            )
        time.sleep(0.05)


def _terminate(process: subprocess.Popen[bytes], *, grace: float) -> None:
    """End a child and its process group (its session: PHP's workers too). A watched child
    (`_WATCHED`) ends its group when its stdin closes, and waits for the command; the rest of
    the group gets SIGKILL once it exits or after ``grace`` seconds. The leader is reaped last,
    so that the group's id cannot have been reused when it is signalled."""
    if process.returncode is not None:
        return
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
    except ChildProcessError:  # already reaped
        process.poll()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except FileNotFoundError:
        return "(no such file)\n"
