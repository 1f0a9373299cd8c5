"""Real servers for the scale-out configuration: Debian's PostgreSQL and a local S3 (moto).

Started once per test session (per xdist worker) on free loopback ports and stopped by
PID, so the Postgres + S3 tests exercise the same wire protocols a deployment uses.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from moto.server import ThreadedMotoServer

PG_USER = "callminer"
PG_PASSWORD = "scaleout-test"  # noqa: S105 - a throwaway server on loopback, gone at teardown
S3_KEY_ID = "test"
S3_SECRET = "test"  # noqa: S105 - moto accepts any credentials
S3_REGION = "us-east-1"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def create_database(self, name: str) -> str:
        """A fresh database, so each test has its own catalog and Dagster storage."""
        con = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname="postgres",
        )
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')  # identifiers take no parameters
        finally:
            con.close()
        return name


@dataclass(frozen=True)
class S3:
    endpoint_url: str
    key_id: str
    secret: str
    region: str


def postgres_bin(name: str) -> str | None:
    """Debian puts initdb/pg_ctl in /usr/lib/postgresql/<major>/bin, off PATH: newest major."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root; as root, run them as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """initdb + pg_ctl start on a free loopback port; fast shutdown by PID at the end."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise FileNotFoundError("initdb/pg_ctl not found: apt-get install -y postgresql")
    # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="callminer-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    data, log = root / "data", root / "server.log"
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, user="postgres")
    port = free_port()
    subprocess.run(  # noqa: S603 - fixed arguments
        _as_postgres_user(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                PG_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(  # noqa: S603 - fixed arguments
        _as_postgres_user(
            [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield Postgres(host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD)
    finally:
        os.kill(pid, signal.SIGINT)  # "fast" shutdown: abort sessions, clean stop
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_s3() -> Iterator[S3]:
    """moto's S3 on a free loopback port, in this process (threads)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3(
            endpoint_url=f"http://{host}:{port}",
            key_id=S3_KEY_ID,
            secret=S3_SECRET,
            region=S3_REGION,
        )
    finally:
        server.stop()
