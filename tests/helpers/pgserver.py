"""A throw-away PostgreSQL server for the tests and CI.

initdb into a fresh temporary folder, listen on 127.0.0.1 only (no Unix socket) on a free port,
password authentication for one user. PostgreSQL refuses to run as root, so under root the
server runs as the ``postgres`` system user (created by Debian's ``postgresql`` package).

    python tests/helpers/pgserver.py start      # prints the folder and the URL (with its password)
    python tests/helpers/pgserver.py stop DIR   # stops the server and deletes DIR
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "poolstudy"


class ServerUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


@dataclass
class Server:
    folder: Path | None  # None: a server this module did not start (nothing to stop)
    port: int
    password: str

    @classmethod
    def at(cls, url: str) -> Server:
        """A running server given by its URL, e.g. the one .ci/run started."""
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        return cls(None, int(parsed.port or 5432), parsed.password or "")

    def url(self, database: str = "postgres", with_password: bool = True) -> str:
        secret = f":{self.password}" if with_password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL (with the password)."""
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, password=self.password,
                               dbname="postgres")
        try:
            con.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        return self.url(name)

    def stop(self) -> None:
        if self.folder is None:
            return
        _run([_binary("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server programs out of PATH, in /usr/lib/postgresql/<version>/bin
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise ServerUnavailable(f"PostgreSQL's {name} is not installed (Debian: apt-get install -y postgresql)")
    return candidates[-1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if not runuser:
        raise ServerUnavailable("running as root but runuser (util-linux) is missing")
    return [runuser, "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise ServerUnavailable(f"{Path(cmd[0]).name} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start() -> Server:
    """Start a server; raises ServerUnavailable with the reason when that is impossible here."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServerUnavailable("running as root and there is no 'postgres' user to run the server") from None
    folder = Path(tempfile.mkdtemp(prefix="poolstudy-pg-"))
    password = secrets.token_urlsafe(16)
    (folder / "pwfile").write_text(password + "\n")
    if owner:
        for path in (folder, folder / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    try:
        _run([initdb, "-D", str(folder / "data"), "-U", USER, "--pwfile", str(folder / "pwfile"),
              "--auth", "scram-sha-256", "-E", "UTF8", "--no-locale"])
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' "
                   f"-c fsync=off -c synchronous_commit=off -c max_connections=200")
        _run([pg_ctl, "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-o", options, "-w", "-t", "60",
              "start"])
    except BaseException:
        log = folder / "server.log"
        detail = log.read_text()[-500:] if log.exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        if detail:
            raise ServerUnavailable(f"the server did not start: {detail}") from None
        raise
    return Server(folder, port, password)


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        try:
            server = start()
        except ServerUnavailable as exc:
            print(f"error: cannot start PostgreSQL: {exc}", file=sys.stderr)
            return 1
        print(server.folder)
        print(server.url())
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        folder = Path(argv[1])
        _run([_binary("pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(folder, ignore_errors=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
