"""A Bulk Export zip -> typed Parquet per data type -> the REST backend's raw shapes.

Parsing is Polars, streamed: each ``*.csv.gz`` member is decompressed as a stream and
cut into blocks of whole records (never inside a quoted field), each block read by
Polars (every column as text first), typed by the layout file's .NET types and written
as one Parquet part, so memory stays flat however large the export is. The CSV dialect is CallMiner's: a byte-order mark, quoted fields, the literal
``null``, ``MM/dd/yyyy HH:mm:ss`` date-times, ``True``/``False``; ``ClientCaptureDate`` is
in the tenant's time zone, every other date-time is UTC.

Layouts are checked against the CSV header and against what the pipeline relies on: a
column that vanished or changed type, or a value that does not parse as its type, is a
``DataError`` naming the type and column, never a silent NULL. A type whose layout says
"Sorry, we could not find any data" is an empty frame. Rows then become the records and
transcript payloads the REST backend would have given, so validation, quarantine and
normalisation are the same code for both backends.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from callminer_assets.lib.errors import DataError
from callminer_assets.lib.models import TranscriptFetch, Window
from callminer_assets.lib.tables import NATIVE_CATEGORIES, NATIVE_SCORES, polars_schema

DATETIME_FORMAT = "%m/%d/%Y %H:%M:%S"
NO_DATA_PREFIX = "sorry, we could not find any data"
BLOCK_BYTES = 4 << 20
"""Decompressed CSV bytes parsed at a time: bounds memory whatever the export's size
(Polars needs several times a block while parsing it; 4 MB keeps a parse near 130 MB)."""

#: column -> .NET type the pipeline relies on, per data type (others: tenant columns).
REQUIRED: dict[str, dict[str, str]] = {
    "Contacts": {
        "ID": "System.String",
        "ClientCaptureDate": "System.DateTime",
        "LastModified": "System.DateTime",
        "MediaType": "System.String",
        "Duration": "System.Double",
    },
    "Transcripts_by_speaker": {
        "ContactID": "System.String",
        "StartTime": "System.Double",
        "SpeakerID": "System.Int32",
        "SpeakerName": "System.String",
        "Text": "System.String",
    },
    "Scores": {
        "ContactID": "System.String",
        "ScoreID": "System.String",
        "ScoreName": "System.String",
        "Score": "System.Double",
    },
    "Categories": {
        "ContactID": "System.String",
        "CategoryID": "System.String",
        "CategoryName": "System.String",
    },
}
DATA_TYPES: tuple[str, ...] = tuple(REQUIRED)
# Contacts columns -> REST record fields (the rest of the columns go to ``extra``).
_CONTACT_FIELDS: dict[str, str] = {
    "AgentID": "agentId",
    "AgentName": "agentName",
    "Direction": "direction",
    "CustomerID": "customerId",
    "Disposition": "disposition",
    "Campaign": "campaign",
    "Queue": "queue",
    "Mailbox": "mailbox",
}
_CONTACT_INFO: dict[str, str] = {
    "ContactName": "name",
    "ContactLocale": "locale",
    "ContactEmail": "email",
    "ContactPhone": "phone",
}
_NOT_EXTRA = frozenset(
    {"ID", "ClientCaptureDate", "MediaType", "Duration", "WrapUpCodes", "Transcribed"}
    | set(_CONTACT_FIELDS)
    | set(_CONTACT_INFO)
)
#: Contacts.MediaType (case-insensitive) -> channel; anything else is quarantined.
MEDIA_CHANNELS: dict[str, str] = {
    "call": "voice",
    "chat": "chat",
    "email": "email",
    "video": "video",
}
_INTEGER_TYPES = frozenset({"System.Int16", "System.Int32", "System.Int64", "System.Byte"})
_FLOAT_TYPES = frozenset({"System.Double", "System.Single", "System.Decimal"})
# SpeakerID -> role; SpeakerName is only trusted when it says so exactly (never guessed).
_SPEAKER_IDS = {1: "agent", 2: "customer"}
_SPEAKER_NAMES = {"agent": "agent", "customer": "customer"}


@dataclass(frozen=True, slots=True)
class StagedExport:
    """One export's data types as Parquet files (``None``: the type had no data)."""

    directory: Path
    files: dict[str, Path | None]

    def scan(self, data_type: str) -> pl.LazyFrame:
        """The type's typed rows, lazily; an empty frame for a type without data."""
        path = self.files.get(data_type)
        if path is None:
            return pl.LazyFrame(schema=_empty_schema(data_type))
        return pl.scan_parquet(path / "*.parquet")


def _empty_schema(data_type: str) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {c: _polars_type(t) for c, t in REQUIRED[data_type].items()}
    if data_type == "Contacts":
        schema["ClientCaptureDate"] = pl.Datetime("us", "UTC")
    if data_type == "Transcripts_by_speaker":
        schema["Seq"] = pl.UInt32()
    return schema


def _polars_type(net_type: str) -> pl.DataType:
    if net_type == "System.DateTime":
        return pl.Datetime("us", "UTC")
    if net_type == "System.Boolean":
        return pl.Boolean()
    if net_type in _INTEGER_TYPES:
        return pl.Int64()
    if net_type in _FLOAT_TYPES:
        return pl.Float64()
    return pl.String()


def _typed(column: str, net_type: str, tenant_timezone: str) -> pl.Expr:
    col = pl.col(column)
    if net_type == "System.DateTime":
        parsed = col.str.strptime(
            pl.Datetime("us"), DATETIME_FORMAT, strict=column != "ClientCaptureDate"
        )
        if column == "ClientCaptureDate":
            # Tenant-local wall time; a time that does not exist (spring DST gap) or cannot be
            # parsed becomes NULL and the contact is quarantined as 'unparseable startTime'.
            local = parsed.dt.replace_time_zone(
                tenant_timezone, ambiguous="earliest", non_existent="null"
            )
            return local.dt.convert_time_zone("UTC").alias(column)
        return parsed.dt.replace_time_zone("UTC").alias(column)
    if net_type == "System.Boolean":
        return (
            col.str.to_lowercase()
            .replace_strict({"true": True, "false": False}, return_dtype=pl.Boolean)
            .alias(column)
        )
    if net_type in _INTEGER_TYPES:
        return col.cast(pl.Int64, strict=True).alias(column)
    if net_type in _FLOAT_TYPES:
        return col.cast(pl.Float64, strict=True).alias(column)
    return col


def _members(zf: zipfile.ZipFile, data_type: str) -> tuple[str | None, str | None]:
    """(CSV member, layout member) of ``data_type``: ``*_{type}.csv.gz`` and ``*{type}*.json``."""
    csv_name = layout_name = None
    for name in zf.namelist():
        base = name.rsplit("/", 1)[-1]
        if base.endswith(f"_{data_type}.csv.gz") or base == f"{data_type}.csv.gz":
            csv_name = name
        elif base.endswith(".json") and data_type in base:
            layout_name = name
    return csv_name, layout_name


def _check_layout(
    data_type: str, layout: Mapping[str, Any] | None, header: list[str] | None
) -> dict[str, str]:
    """column -> .NET type, after checking layout, header and what the pipeline relies on."""
    declared: dict[str, str] = {}
    if layout is not None:
        entities = layout.get("LayoutEntity")
        if not isinstance(entities, list):
            raise DataError(f"{data_type} layout has no LayoutEntity list")
        for e in sorted(
            (e for e in entities if isinstance(e, dict)), key=lambda e: e.get("Ordinal") or 0
        ):
            declared[str(e.get("ColumnName"))] = str(e.get("Type"))
    if header is not None and layout is not None and list(declared) != header:
        raise DataError(
            f"{data_type}: the CSV header {header} does not match its layout {list(declared)}"
        )
    columns = declared or dict.fromkeys(header or [], "System.String")
    for column, expected in REQUIRED[data_type].items():
        if column not in columns:
            raise DataError(f"{data_type}: column {column!r} vanished from the export")
        if declared and declared[column] != expected:
            raise DataError(
                f"{data_type}: column {column!r} changed type to {declared[column]}, "
                f"expected {expected}"
            )
    return columns


def _blocks(stream: gzip.GzipFile, block_bytes: int) -> Iterator[bytes]:
    """Whole CSV records in blocks of about ``block_bytes``: a block ends at a newline
    outside quotes (an even number of ``"`` before it), so quoted newlines never split."""
    carry = b""  # always starts at a record boundary
    while True:
        chunk = stream.read(block_bytes)
        data = carry + chunk
        if not chunk:
            if data.strip():
                yield data
            return
        cut = data.rfind(b"\n")
        while cut >= 0 and data.count(b'"', 0, cut) % 2:
            cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            carry = data  # one record longer than a block: read on
            continue
        yield data[: cut + 1]
        carry = data[cut + 1 :]


def _header(stream: gzip.GzipFile) -> list[str]:
    line = stream.readline().removeprefix(b"\xef\xbb\xbf")
    row = pl.read_csv(line, has_header=False, infer_schema=False).row(0)
    return [str(c) for c in row]


def stage_export(
    zip_path: Path,
    directory: Path,
    tenant_timezone: str,
    data_types: Sequence[str] = DATA_TYPES,
) -> StagedExport:
    """Every ``data_types`` member of the zip as typed Parquet in ``directory``.

    A corrupt zip, a missing data type (neither CSV nor a "no data" layout), a layout that
    does not match, or a value that does not parse is a ``DataError``: the caller writes
    nothing and keeps the export for a retry.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path | None] = {}
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"export {zip_path.name} is not a readable zip ({exc})") from None
    with zf:
        for data_type in data_types:
            csv_name, layout_name = _members(zf, data_type)
            layout = json.loads(zf.read(layout_name)) if layout_name else None
            message = str((layout or {}).get("ResultMessage") or "")
            if csv_name is None:
                if message.strip().lower().startswith(NO_DATA_PREFIX):
                    files[data_type] = None
                    continue
                raise DataError(f"export {zip_path.name} has no {data_type} file")
            try:
                files[data_type] = _sink(
                    zf, csv_name, data_type, layout, tenant_timezone, directory
                )
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"{data_type} file of {zip_path.name} is corrupt ({exc})") from None
    return StagedExport(directory, files)


def _sink(
    zf: zipfile.ZipFile,
    member: str,
    data_type: str,
    layout: Mapping[str, Any] | None,
    tenant_timezone: str,
    directory: Path,
) -> Path:
    """Decompress ``member`` as a stream and write it as typed Parquet parts, one per
    block: memory stays at a block's worth whatever the size of the file."""
    out = directory / data_type
    out.mkdir()
    with zf.open(member) as raw, gzip.GzipFile(fileobj=raw) as gz:
        header = _header(gz)
        columns = _check_layout(data_type, layout, header)
        typed = [_typed(c, t, tenant_timezone) for c, t in columns.items()]
        rows = 0
        for n, block in enumerate(_blocks(gz, BLOCK_BYTES)):
            try:
                frame = pl.read_csv(
                    block,
                    has_header=False,
                    new_columns=header,
                    infer_schema=False,
                    null_values=["null"],
                    quote_char='"',
                ).with_columns(typed)
            except pl.exceptions.PolarsError as exc:
                first = str(exc).strip().splitlines()[0][:200]
                raise DataError(
                    f"{data_type}: a value does not parse as its layout type ({first})"
                ) from None
            if data_type == "Transcripts_by_speaker":
                frame = frame.with_row_index("Seq", offset=rows)
            rows += frame.height
            frame.write_parquet(out / f"part-{n:05d}.parquet")
    if rows == 0:
        pl.DataFrame(schema=_empty_schema(data_type)).write_parquet(out / "part-00000.parquet")
    return out


# --------------------------------------------------------------------------- to REST shapes


def newest_contacts(staged: StagedExport) -> pl.LazyFrame:
    """One row per contact ID: the version with the newest ``LastModified`` wins."""
    return (
        staged.scan("Contacts")
        .sort("LastModified", nulls_last=False, maintain_order=True)
        .unique("ID", keep="last", maintain_order=True)
    )


def contact_days(staged: StagedExport, modified_since: datetime) -> list[date]:
    """UTC capture days of the contacts modified at or after ``modified_since`` (what a
    ``NewAndUpdated`` export of whole days says has changed since the last look)."""
    days = (
        newest_contacts(staged)
        .filter(pl.col("LastModified") >= modified_since)
        .select(pl.col("ClientCaptureDate").dt.date().alias("d"))
        .drop_nulls()
        .unique()
        .collect()
    )
    return sorted(days["d"].to_list())


def contact_records(
    staged: StagedExport, window: Window, *, include_undated: bool = False
) -> list[dict[str, Any]]:
    """The REST listing records of the contacts captured in ``window`` (UTC).

    ``include_undated`` adds contacts whose ClientCaptureDate did not parse, so they are
    quarantined once (in the first day of a run) instead of vanishing.
    """
    start, end = window.start, window.end
    when = pl.col("ClientCaptureDate")
    keep = (when >= start) & (when < end)
    if include_undated:
        keep = keep | when.is_null()
    frame = newest_contacts(staged).filter(keep).collect()
    return [_record(row) for row in frame.iter_rows(named=True)]


def _record(row: Mapping[str, Any]) -> dict[str, Any]:
    media = row.get("MediaType")
    channel = MEDIA_CHANNELS.get(media.strip().lower(), media) if isinstance(media, str) else media
    when = row.get("ClientCaptureDate")
    rec: dict[str, Any] = {
        "id": row.get("ID"),
        "channel": channel,
        "startTime": when.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(when, datetime) else None,
        "duration": row.get("Duration"),
    }
    for column, key in _CONTACT_FIELDS.items():
        if row.get(column) is not None:
            rec[key] = row[column]
    codes = row.get("WrapUpCodes")
    rec["wrapUpCodes"] = [c for c in codes.split(";") if c] if isinstance(codes, str) else []
    contact = {k: row[c] for c, k in _CONTACT_INFO.items() if row.get(c) is not None}
    if contact:
        rec["contact"] = contact
    for column, value in row.items():
        if column not in _NOT_EXTRA and column not in rec:
            rec[column] = value.isoformat() if isinstance(value, datetime) else value
    return rec


def transcript_fetches(staged: StagedExport, ids: Sequence[str]) -> list[TranscriptFetch]:
    """One fetch per id: ``available`` with its utterances in REST shape, else ``pending``.

    A contact not ``Transcribed`` yet, or without any utterance row, is pending (as the REST
    backend's 404/processing); the newest contact version's rows are the ones exported.
    """
    unique = list(dict.fromkeys(ids))
    contacts = (
        newest_contacts(staged)
        .filter(pl.col("ID").is_in(unique))
        .select(
            "ID",
            "MediaType",
            (pl.col("Transcribed") if "Transcribed" in _columns(staged) else pl.lit(True)).alias(
                "Transcribed"
            ),
        )
        .collect()
    )
    media = {i: m for i, m, _ in contacts.iter_rows()}
    ready = {i for i, _, t in contacts.iter_rows() if t is not False}
    rows = (
        staged.scan("Transcripts_by_speaker")
        .filter(pl.col("ContactID").is_in(list(ready)))
        .sort(["ContactID", "Seq"])
        .collect()
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for cid, start, sid, sname, text in rows.select(
        "ContactID", "StartTime", "SpeakerID", "SpeakerName", "Text"
    ).iter_rows():
        by_id.setdefault(cid, []).append(
            {"speakerRole": _role(sid, sname), "startTime": start, "text": text}
        )
    out: list[TranscriptFetch] = []
    for iid in unique:
        utterances = by_id.get(iid)
        if not utterances:
            out.append(TranscriptFetch(iid, "pending"))
            continue
        channel = MEDIA_CHANNELS.get(str(media.get(iid) or "").lower())
        fmt = "ovts" if channel in ("voice", "video") else "plain"
        out.append(
            TranscriptFetch(
                iid, "available", {"interactionId": iid, "format": fmt, "utterances": utterances}
            )
        )
    return out


def _columns(staged: StagedExport) -> list[str]:
    return staged.scan("Contacts").collect_schema().names()


def _role(speaker_id: Any, speaker_name: Any) -> str:
    """agent / customer from SpeakerID (1/2), else from an exact SpeakerName, else unknown."""
    if isinstance(speaker_id, int) and speaker_id in _SPEAKER_IDS:
        return _SPEAKER_IDS[speaker_id]
    if isinstance(speaker_name, str):
        return _SPEAKER_NAMES.get(speaker_name.strip().lower(), "unknown")
    return "unknown"


def native_frames(
    staged: StagedExport, days: Sequence[date], exported_at: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``callminer.native_scores`` and ``callminer.native_categories`` rows of ``days``.

    Only the newest version of each contact contributes, and only its own child rows.
    """
    contacts = (
        newest_contacts(staged)
        .select(
            pl.col("ID").alias("interaction_id"),
            pl.col("ClientCaptureDate").dt.date().alias("interaction_date"),
            pl.col("LastModified").alias("last_modified"),
        )
        .filter(pl.col("interaction_date").is_in(list(days)))
    )
    exported = pl.lit(exported_at.astimezone(UTC)).cast(pl.Datetime("us", "UTC"))

    def rows(data_type: str, renames: dict[str, str], table: Any) -> pl.DataFrame:
        child = staged.scan(data_type).select(
            pl.col("ContactID").alias("interaction_id"),
            *(pl.col(src).alias(dst) for src, dst in renames.items()),
        )
        frame = contacts.join(child, on="interaction_id", how="inner").with_columns(
            exported.alias("exported_at")
        )
        return frame.select(table.column_names).collect().cast(polars_schema(table))

    scores = rows(
        "Scores",
        {"ScoreID": "score_id", "ScoreName": "score_name", "Score": "score"},
        NATIVE_SCORES,
    )
    categories = rows(
        "Categories",
        {"CategoryID": "category_id", "CategoryName": "category_name"},
        NATIVE_CATEGORIES,
    )
    return scores, categories
