"""The CallMiner Bulk Export API of the sandbox: jobs, executions, a zip of gzip CSVs.

Mounted beside the REST routes in the same app (paths under ``/bulkexport`` and the
identity provider's ``/connect/token`` do not collide with ``/v1`` and ``/oauth/token``)
and fed by the same ``Generator``, so one seed gives the same interactions and
utterances through either backend. Time is compressible: an execution takes
``job_seconds`` of *sandbox* time, which passes ``clock_speed`` times faster than real
time, so "poll every 60 s" costs milliseconds in tests. Every fault of the contract is
a field of ``BulkSwitches`` (``state.bulk.switches``); transport faults (429 with or
without ``Retry-After``, 500/504, 401) reuse the REST middleware's ``state.inject``.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import shutil
import tempfile
import time
import weakref
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from callminer_assets.sandbox.generator import Spec, _h, _u

if TYPE_CHECKING:
    from callminer_assets.sandbox.app import SandboxState

BULK_PREFIX = "/bulkexport"
BULK_SCOPE = "https://callminer.net/auth/platform-bulkexport"
DATA_TYPES: tuple[str, ...] = ("Contacts", "Transcripts_by_speaker", "Scores", "Categories")
SEARCH_MODES: tuple[str, ...] = ("ClientCaptureDate", "CreateDate", "Updated", "NewAndUpdated")
NO_DATA = "Sorry, we could not find any data for the given criteria."
DATETIME_FORMAT = "%m/%d/%Y %H:%M:%S"
MEDIA_TYPES = {"voice": "Call", "chat": "Chat", "email": "Email", "video": "Video"}
PROCESSING_LAG = timedelta(minutes=20)
"""A contact's first LastModified: this long after the interaction ended."""

#: The tenant's own Contacts columns, as ``GET /api/info/callmetadataconfig`` lists them.
TENANT_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("UDF_Region", "Region", "Recording data centre", "System.String"),
    ("UDF_SentimentHint", "Sentiment hint", "Agent's own sentiment tag", "System.String"),
    ("UDF_Priority", "Priority", "Routing priority 1-5", "System.Int32"),
)
CONTACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ID", "System.String"),
    ("ClientCaptureDate", "System.DateTime"),
    ("LastModified", "System.DateTime"),
    ("MediaType", "System.String"),
    ("Duration", "System.Double"),
    ("AgentID", "System.String"),
    ("AgentName", "System.String"),
    ("Direction", "System.String"),
    ("CustomerID", "System.String"),
    ("Disposition", "System.String"),
    ("WrapUpCodes", "System.String"),
    ("Campaign", "System.String"),
    ("Queue", "System.String"),
    ("Mailbox", "System.String"),
    ("ContactName", "System.String"),
    ("ContactLocale", "System.String"),
    ("ContactEmail", "System.String"),
    ("ContactPhone", "System.String"),
    ("Transcribed", "System.Boolean"),
    *((c, t) for c, _, _, t in TENANT_COLUMNS),
)
LAYOUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "Contacts": CONTACT_COLUMNS,
    "Transcripts_by_speaker": (
        ("ContactID", "System.String"),
        ("StartTime", "System.Double"),
        ("SpeakerID", "System.Int32"),
        ("SpeakerName", "System.String"),
        ("Text", "System.String"),
    ),
    "Scores": (
        ("ContactID", "System.String"),
        ("ScoreID", "System.String"),
        ("ScoreName", "System.String"),
        ("Score", "System.Double"),
    ),
    "Categories": (
        ("ContactID", "System.String"),
        ("CategoryID", "System.String"),
        ("CategoryName", "System.String"),
    ),
}
_SPEAKERS = {"agent": (1, "Agent"), "customer": (2, "Customer"), "unknown": (0, None)}
_SCORES = (("S-100", "Agent Quality"), ("S-200", "Compliance"), ("S-300", "Customer Satisfaction"))


@dataclass
class BulkSwitches:
    """Bulk Export faults and timing; tests flip these at runtime like ``state.faults``."""

    job_seconds: float = 120.0  # sandbox seconds an execution takes
    clock_speed: float = 600.0  # sandbox seconds per real second
    stuck: bool = False  # executions created now stay InProgress forever
    failed: bool = False  # executions created now end Failed
    truncated_zip: bool = False  # downloads are cut short (FileSize says the full size)
    missing_type: str | None = None  # this data type's files are left out of the zip
    delete_status: int | None = None  # DELETE of jobs and executions answers this (404/500)
    reprocess_rate: float = 0.0  # share of contacts re-processed (newer LastModified)
    repeat: int = 1  # large download: every contact written this many times (new ids)
    gzip_level: int = 1  # 0 makes the zip as large as its CSVs (a big download, built fast)
    tenant_timezone: str = "America/New_York"  # ClientCaptureDate is in this zone


@dataclass
class BulkState:
    """Jobs, executions, built zips and what clients did (downloads, deletes)."""

    switches: BulkSwitches = field(default_factory=BulkSwitches)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    history_polls: Counter[str] = field(default_factory=Counter)
    downloads: Counter[str] = field(default_factory=Counter)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    scoped_tokens: set[str] = field(default_factory=set, repr=False)
    reprocessed_at: datetime | None = None
    directory: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="callminer-bulk-sandbox-"))
    )

    def __post_init__(self) -> None:
        weakref.finalize(self, shutil.rmtree, self.directory, True)
        if self.switches.reprocess_rate:
            self.reprocessed_at = datetime.now(UTC)

    def reprocess(self, rate: float = 1.0) -> None:
        """Re-process ``rate`` of all contacts now: later exports carry their new version."""
        self.switches.reprocess_rate = rate
        self.reprocessed_at = datetime.now(UTC)


BULK_FAULTS: tuple[str, ...] = (
    "stuck",
    "failed",
    "truncated-zip",
    *(f"missing-{t}" for t in DATA_TYPES),
    "delete-404",
    "delete-500",
    "reprocess",
)


def bulk_switches(faults: tuple[str, ...] = (), **timing: Any) -> BulkSwitches:
    """Switches with the named ``BULK_FAULTS`` on (what ``--bulk-fault`` turns on at start)."""
    unknown = [f for f in faults if f not in BULK_FAULTS]
    if unknown:
        raise ValueError(f"unknown bulk fault(s) {unknown}; choose from {BULK_FAULTS}")
    missing = [f.removeprefix("missing-") for f in faults if f.startswith("missing-")]
    deletes = [int(f.removeprefix("delete-")) for f in faults if f.startswith("delete-")]
    return BulkSwitches(
        stuck="stuck" in faults,
        failed="failed" in faults,
        truncated_zip="truncated-zip" in faults,
        missing_type=missing[0] if missing else None,
        delete_status=deletes[0] if deletes else None,
        reprocess_rate=0.2 if "reprocess" in faults else 0.0,
        **timing,
    )


def _fmt(moment: datetime, zone: ZoneInfo | None = None) -> str:
    return (moment.astimezone(zone) if zone else moment.astimezone(UTC)).strftime(DATETIME_FORMAT)


def _null(value: Any) -> str:
    """CallMiner writes the literal ``null`` for no value and ``True``/``False`` for booleans."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


class ExportBuilder:
    """Writes one execution's zip from the generator (streamed, so it can be large)."""

    def __init__(self, st: SandboxState) -> None:
        self.st = st
        self.gen = st.generator
        self.sw = st.bulk.switches
        self._last: tuple[str, list[tuple[str, str]]] | None = None

    def _utterances(self, spec: Spec) -> list[tuple[str, str]]:
        """The contact's utterances, generated once for all its ``repeat`` copies."""
        if self._last is None or self._last[0] != spec.interaction_id:
            self._last = (spec.interaction_id, self.gen.utterances(spec))
        return self._last[1]

    def reprocessed(self, iid: str) -> bool:
        bulk = self.st.bulk
        return bulk.reprocessed_at is not None and (
            _u(self.st.config.seed, "reprocess", iid) < self.sw.reprocess_rate
        )

    def last_modified(self, spec: Spec) -> datetime:
        if self.reprocessed(spec.interaction_id) and self.st.bulk.reprocessed_at is not None:
            return self.st.bulk.reprocessed_at
        return spec.start + timedelta(seconds=spec.duration) + PROCESSING_LAG

    def contacts(self, job: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Spec]]:
        """(REST record, spec) of every contact the job's window and search mode select."""
        custom = job["Duration"]["Custom"]
        start = datetime.fromisoformat(custom["StartDate"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(custom["EndDate"].replace("Z", "+00:00"))
        by_change = job["Duration"].get("SearchMode") in ("Updated", "NewAndUpdated")
        first = start.date() - timedelta(days=40 if by_change else 0)
        day = first
        while day < end.date() + timedelta(days=1):
            records, specs = self.gen.day(day)
            for when, rec in records:
                spec = specs.get(rec["id"]) if isinstance(rec, dict) else None
                if spec is None or when is None:
                    continue
                moment = self.last_modified(spec) if by_change else when
                if start <= moment < end:
                    yield rec, spec
            day += timedelta(days=1)

    def build(self, job: dict[str, Any], execution_id: str) -> Path:
        path = self.st.bulk.directory / f"{execution_id}.zip"
        wanted = [t for t in job["DataTypes"] if t != self.sw.missing_type]
        counts = dict.fromkeys(DATA_TYPES, 0)
        zone = ZoneInfo(self.sw.tenant_timezone)
        now = self.st.clock()
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for dtype in wanted:  # zipfile writes one member at a time
                with (
                    zf.open(f"{execution_id}_{dtype}.csv.gz", "w", force_zip64=True) as raw,
                    gzip.GzipFile(
                        fileobj=raw, mode="wb", compresslevel=self.sw.gzip_level, mtime=0
                    ) as gz,
                    io.TextIOWrapper(gz, encoding="utf-8-sig", newline="") as text,
                ):
                    writer = csv.writer(text)
                    writer.writerow([c for c, _ in LAYOUTS[dtype]])
                    for rec, spec in self.contacts(job):
                        for k in range(self.sw.repeat):
                            suffix = "" if k == 0 else f"-R{k}"
                            counts[dtype] += self._rows(dtype, writer, rec, spec, suffix, zone, now)
            for dtype in job["DataTypes"]:
                if dtype == self.sw.missing_type:
                    continue
                layout = {
                    "ExportId": execution_id,
                    "RecordCount": counts[dtype],
                    "ResultMessage": NO_DATA if counts[dtype] == 0 else "Success",
                    "LayoutEntity": [
                        {"ColumnName": c, "Type": t, "Ordinal": i}
                        for i, (c, t) in enumerate(LAYOUTS[dtype])
                    ],
                }
                zf.writestr(f"{execution_id}_{dtype}_layout.json", json.dumps(layout))
        # A type without rows has only its layout, as CallMiner sends it.
        empty = [t for t in wanted if counts[t] == 0]
        if empty:
            self._drop(path, [f"{execution_id}_{t}.csv.gz" for t in empty])
        return path

    @staticmethod
    def _drop(path: Path, names: list[str]) -> None:
        tmp = path.with_suffix(".tmp")
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", allowZip64=True) as dst:
            for info in src.infolist():
                if info.filename not in names:
                    with src.open(info) as fin, dst.open(info.filename, "w") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
        tmp.replace(path)

    def _rows(
        self,
        dtype: str,
        writer: Any,
        rec: dict[str, Any],
        spec: Spec,
        suffix: str,
        zone: ZoneInfo,
        now: datetime,
    ) -> int:
        iid = spec.interaction_id + suffix
        seed = self.st.config.seed
        reproc = self.reprocessed(spec.interaction_id)
        transcribed = now >= spec.start + timedelta(seconds=spec.duration) + timedelta(
            seconds=self.st.faults.pending_lag_s
        )
        if dtype == "Contacts":
            contact = rec.get("contact") or {}
            media = MEDIA_TYPES[spec.channel]
            if rec.get("channel") != spec.channel:  # the REST listing's case variants
                media = media.upper()
            region = rec.get("recordingRegion")
            writer.writerow(
                [
                    _null(v)
                    for v in (
                        iid,
                        _fmt(spec.start, zone),
                        _fmt(self.last_modified(spec)),
                        media,
                        rec.get("duration"),
                        rec.get("agentId"),
                        rec.get("agentName"),
                        rec.get("direction"),
                        rec.get("customerId"),
                        rec.get("disposition"),
                        ";".join(rec.get("wrapUpCodes") or []) or None,
                        rec.get("campaign"),
                        rec.get("queue"),
                        rec.get("mailbox"),
                        contact.get("name"),
                        contact.get("locale"),
                        contact.get("email"),
                        contact.get("phone"),
                        transcribed,
                        region.get("dc") if isinstance(region, dict) else None,
                        rec.get("x_sentimentHint"),
                        1 + _h(seed, "priority", spec.interaction_id) % 5,
                    )
                ]
            )
            return 1
        if dtype == "Transcripts_by_speaker":
            if not transcribed:
                return 0
            utts = self._utterances(spec)
            if reproc:  # re-processing re-transcribed it: the last utterance is gone
                utts = utts[:-1]
            step = (spec.duration or 60.0 * len(utts)) / max(1, len(utts))
            for i, (role, text) in enumerate(utts):
                if spec.channel == "email" and _u(seed, "role", spec.interaction_id, i) < 0.15:
                    role = "unknown"
                sid, name = _SPEAKERS[role]
                writer.writerow([iid, round(i * step, 2), sid, _null(name), text])
            return len(utts)
        if dtype == "Scores":
            tr = spec.traits
            values = (
                round(100 * (0.5 * tr.empathy + 0.5 * (1 - tr.stress)), 1),
                round(100 * tr.compliance, 1),
                None
                if spec.channel == "email"
                else round(100 * (0.8 if spec.resolved else 0.3), 1),
            )
            for (score_id, score_name), value in zip(_SCORES, values, strict=True):
                if reproc and value is not None:  # re-scored: a new value replaces the old
                    value = round(value / 2, 1)
                writer.writerow([iid, score_id, score_name, _null(value)])
            return len(_SCORES)
        rows = [(f"C-{spec.topic[:4].upper()}", f"Topic: {spec.topic}")]
        if not spec.resolved:
            rows.append(("C-UNRES", "Unresolved"))
        if reproc:
            rows = [("C-REPROC", "Re-processed")]
        for cid, name in rows:
            writer.writerow([iid, cid, name])
        return len(rows)


def _msg(status: int, message: str) -> Response:
    return JSONResponse({"Message": message}, status_code=status)


def _whole_utc_day(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.utcoffset() != timedelta(0) or moment.time() != datetime.min.time():
        return None
    return moment


def bulk_routes(st: SandboxState) -> list[Route]:
    """The Bulk Export routes and its identity provider, over ``st`` (mounted by create_app)."""
    bulk = st.bulk
    builder = ExportBuilder(st)
    ids = Counter[str]()

    def new_id(kind: str) -> str:
        ids[kind] += 1
        return f"{kind}-{_h(st.config.seed, kind, ids[kind]) % 10**12:012d}"

    def auth(request: Request) -> Response | None:
        val = request.headers.get("authorization", "")
        tok = val[7:].strip() if val[:7].lower() == "bearer " else None
        exp = st.tokens.get(tok) if tok else None
        if tok is None or exp is None or time.monotonic() >= exp:
            st.tokens.pop(tok or "", None)
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        if tok not in bulk.scoped_tokens:
            return JSONResponse({"error": "insufficient_scope"}, status_code=403)
        return None

    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if (form.get("client_id"), form.get("client_secret")) != (
            st.config.client_id,
            st.config.client_secret,
        ):
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        if form.get("scope") != BULK_SCOPE:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        tok = f"bulk-{new_id('tok')}-{_h(time.time_ns()) % 10**9}"
        st.tokens[tok] = time.monotonic() + st.faults.token_ttl
        bulk.scoped_tokens.add(tok)
        st.tokens_issued += 1
        return JSONResponse(
            {
                "access_token": tok,
                "expires_in": st.faults.token_ttl,
                "token_type": "Bearer",
                "scope": BULK_SCOPE,
            }
        )

    async def create_job(request: Request) -> Response:
        if (denied := auth(request)) is not None:
            return denied
        try:
            body = json.loads(await request.body())
            custom = body["Duration"]["Custom"]
            start, end = _whole_utc_day(custom["StartDate"]), _whole_utc_day(custom["EndDate"])
            mode = body["Duration"].get("SearchMode", "ClientCaptureDate")
            types = body["DataTypes"]
        except (ValueError, KeyError, TypeError):
            return _msg(400, "The job needs Name, Duration.Custom and DataTypes.")
        if start is None or end is None or end <= start:
            return _msg(400, "Custom StartDate/EndDate must be whole UTC days, Start < End.")
        if mode not in SEARCH_MODES:
            return _msg(400, f"Unknown SearchMode {mode!r}.")
        if not types or any(t not in DATA_TYPES for t in types):
            return _msg(400, "Unknown data type.")
        job = {
            **body,
            "Duration": {**body["Duration"], "SearchMode": mode},
            "Id": new_id("job"),
            "CreateDate": datetime.now(UTC).isoformat(timespec="seconds"),
            "CreatedBy": st.config.client_id,
        }
        bulk.jobs[job["Id"]] = job
        sw = bulk.switches
        outcome = "InProgress" if sw.stuck else ("Failed" if sw.failed else "Completed")
        execution = {
            "Id": new_id("exec"),
            "ExportJobId": job["Id"],
            "Status": "InProgress",
            "CreateDate": job["CreateDate"],
            "JobCompletionTime": None,
            "FileSize": None,
            "DownloadEndpoint": None,
            "_outcome": outcome,
            "_started": time.monotonic(),
            "_path": None,
            "_truncated": sw.truncated_zip,
        }
        bulk.executions[execution["Id"]] = execution
        return JSONResponse(job, status_code=201)

    async def job_route(request: Request) -> Response:
        if (denied := auth(request)) is not None:
            return denied
        job_id = request.path_params["job_id"]
        if job_id not in bulk.jobs:
            return _msg(404, "No such export job.")
        if request.method == "GET":
            return JSONResponse(bulk.jobs[job_id])
        if bulk.switches.delete_status:
            return _msg(bulk.switches.delete_status, "Could not delete the job.")
        del bulk.jobs[job_id]
        bulk.deleted.append(("job", job_id))
        return JSONResponse({})

    async def finish(ex: dict[str, Any], job: dict[str, Any], base_url: str) -> None:
        sw = bulk.switches
        elapsed = (time.monotonic() - ex["_started"]) * sw.clock_speed
        if ex["Status"] != "InProgress" or ex["_outcome"] == "InProgress":
            return
        if elapsed < sw.job_seconds:
            return
        if ex["_outcome"] == "Failed":
            ex["Status"] = "Failed"
            ex["Message"] = "Export failed: the search exceeded the tenant's time limit."
        else:
            path = await asyncio.to_thread(builder.build, job, ex["Id"])
            ex.update(
                _path=path,
                Status="Completed",
                FileSize=path.stat().st_size,
                DownloadEndpoint=f"{base_url}{BULK_PREFIX}/api/export/download/{ex['Id']}",
            )
        ex["JobCompletionTime"] = datetime.now(UTC).isoformat(timespec="seconds")

    async def history(request: Request) -> Response:
        if (denied := auth(request)) is not None:
            return denied
        job_id = request.query_params.get("id", "")
        job = bulk.jobs.get(job_id)
        if job is None:
            return _msg(404, "No such export job.")
        bulk.history_polls[job_id] += 1
        if bulk.history_polls[job_id] == 1:
            return JSONResponse([])  # "possibly empty at first"
        base = str(request.base_url).rstrip("/")
        out = []
        for ex in list(bulk.executions.values()):
            if ex["ExportJobId"] == job_id:
                await finish(ex, job, base)
                out.append({k: v for k, v in ex.items() if not k.startswith("_")})
        return JSONResponse(out)

    async def delete_execution(request: Request) -> Response:
        if (denied := auth(request)) is not None:
            return denied
        ex_id = request.path_params["execution_id"]
        if bulk.switches.delete_status:
            return _msg(bulk.switches.delete_status, "Could not delete the execution.")
        ex = bulk.executions.pop(ex_id, None)
        if ex is None:
            return _msg(404, "No such execution.")
        if ex["_path"] is not None:
            Path(ex["_path"]).unlink(missing_ok=True)
        bulk.deleted.append(("execution", ex_id))
        return JSONResponse({})

    async def download(request: Request) -> Response:
        if (denied := auth(request)) is not None:
            return denied
        ex = bulk.executions.get(request.path_params["execution_id"])
        if ex is None or ex["_path"] is None:
            return _msg(404, "No such export file.")
        bulk.downloads[ex["Id"]] += 1
        path: Path = ex["_path"]
        if ex["_truncated"]:
            cut = path.read_bytes()[: max(1, path.stat().st_size // 2)]
            return Response(cut, media_type="application/zip")
        return FileResponse(path, media_type="application/zip")

    async def metadata_config(request: Request) -> Response:
        if (denied := auth(request)) is not None:
            return denied
        return JSONResponse(
            [
                {"ColumnName": c, "FriendlyName": f, "Description": d, "DotNetType": t}
                for c, f, d, t in TENANT_COLUMNS
            ]
        )

    p = BULK_PREFIX
    return [
        Route("/connect/token", token, methods=["POST"]),
        Route(f"{p}/api/export/job", create_job, methods=["POST"]),
        Route(f"{p}/api/export/job/{{job_id}}", job_route, methods=["GET", "DELETE"]),
        Route(f"{p}/api/export/history", history, methods=["GET"]),
        Route(f"{p}/api/export/history/{{execution_id}}", delete_execution, methods=["DELETE"]),
        Route(f"{p}/api/export/download/{{execution_id}}", download, methods=["GET"]),
        Route(f"{p}/api/info/callmetadataconfig", metadata_config, methods=["GET"]),
    ]


__all__ = [
    "BULK_PREFIX",
    "BULK_SCOPE",
    "DATA_TYPES",
    "BulkState",
    "BULK_FAULTS",
    "BulkSwitches",
    "bulk_routes",
    "bulk_switches",
]
