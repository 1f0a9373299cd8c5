"""Fixtures for the scale-out configuration: one PostgreSQL and one S3 per session,
a fresh database pair, bucket and DAGSTER_HOME (deploy/dagster.yaml, verbatim) per test."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.defs.helpers import REPO, env_without_credentials
from tests.scaleout.servers import S3, Postgres, postgres_bin, running_postgres, running_s3


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not postgres_bin("initdb") and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql; .ci/run does)")
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    with running_s3() as server:
        yield server


@dataclass(frozen=True)
class ScaleOut:
    """Everything a process needs to join the deployment: its environment and home."""

    env: dict[str, str]
    home: Path
    bucket: str


@pytest.fixture
def scaleout(postgres: Postgres, s3: S3, tmp_path: Path) -> ScaleOut:
    """The deploy/env.example variables pointed at this test's databases and bucket."""
    suffix = uuid.uuid4().hex[:10]
    lake_db = postgres.create_database(f"lake_{suffix}")
    dagster_db = postgres.create_database(f"dagster_{suffix}")
    bucket = f"lake-{suffix}"
    boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.key_id,
        aws_secret_access_key=s3.secret,
        region_name=s3.region,
    ).create_bucket(Bucket=bucket)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = env_without_credentials(
        DAGSTER_HOME=str(home),
        PGHOST=postgres.host,
        PGPORT=str(postgres.port),
        PGUSER=postgres.user,
        PGPASSWORD=postgres.password,
        DAGSTER_PG_DB=dagster_db,
        WAREHOUSE_CATALOG=f"postgres:dbname={lake_db}",
        WAREHOUSE_DATA_PATH=f"s3://{bucket}/lake/",
        AWS_ACCESS_KEY_ID=s3.key_id,
        AWS_SECRET_ACCESS_KEY=s3.secret,
        AWS_REGION=s3.region,
        AWS_ENDPOINT_URL=s3.endpoint_url,
        SANDBOX_PER_DAY="4",
    )
    env.pop("DUCKDB_PATH", None)
    return ScaleOut(env=env, home=home, bucket=bucket)
