"""``python -m callminer_assets``: the pipeline headless, its summary, maintenance commands.

``run`` executes the named jobs of the code location: a run per week of days (a few runs per
child process, so memory does not grow with the range), then one over the whole months, the
models and the reports (decisions 0015, 0017). Every partition's materialisation carries its
own figures. Dagster's event stream goes to a log file; the terminal gets a progress bar
(or one line per chunk of days when not a terminal), then the summary.

A subcommand registers itself in a few lines::

    @command("rescore", "evaluate stored transcripts again", _rescore_arguments)
    def _rescore(args: argparse.Namespace) -> int: ...

``pipeline=True`` (the default) prepares DAGSTER_HOME, checks the warehouse location and
loads the code location first, so configuration errors are one line and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from callminer_assets.lib.errors import ConfigError

TRIGGER_TAG = "callminer/trigger"
WINDOW_TAG = "callminer/window"
DAYS_PER_LINE = 7
"""Without a terminal, one progress line per this many days (a half year: 26 lines)."""
DAYS_PER_RUN = 7
"""Days one run covers: a run's fixed cost (events, a transaction per table) is paid once a
week, and each day still gets its own figures (decision 0017)."""
RUNS_PER_PROCESS = 4
"""Runs done by one child process. A process's memory creeps up over its runs (it is not
returned by ``malloc_trim``); a child's is returned when it exits, so peak RSS is that of
a few weeks whatever the window (decisions 0015, 0017)."""
_PROGRESS_KEYS = {
    "callminer/interactions": ("dagster/row_count",),
    "callminer/transcripts": ("pending",),
    "semarize/evaluations": ("runs_started", "per_status"),
}
_REPO_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"


# -- subcommands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None
    pipeline: bool


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    help: str,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    pipeline: bool = True,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register ``handler(args) -> exit status`` as a subcommand (see the module docstring)."""

    def register(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
        COMMANDS[name] = Command(name, help, handler, arguments, pipeline)
        return handler

    return register


# -- preparation: DAGSTER_HOME, the warehouse location, the code location -----------------------


def default_dagster_home() -> Path:
    """``DAGSTER_HOME``, else ``./.dagster_home`` holding the repo's ``dagster.yaml`` (set here)."""
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        if not home.is_dir():
            raise ConfigError(
                f"DAGSTER_HOME={home} is not a directory: create it (mkdir -p {home}) or unset "
                "DAGSTER_HOME to use ./.dagster_home"
            )
        return home
    home = Path(".dagster_home").resolve()
    home.mkdir(exist_ok=True)
    if not (home / "dagster.yaml").exists() and _REPO_DAGSTER_YAML.exists():
        shutil.copyfile(_REPO_DAGSTER_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def warehouse_locations() -> dict[str, Path]:
    """The local files a run writes the lake to, by the variable that sets them (a file in
    each folder that must be writable; Postgres and S3 are checked by their servers)."""
    from callminer_assets.lib.settings import WarehouseSettings

    lake = WarehouseSettings.from_env()  # DUCKDB_PATH set: a one-line error naming these
    found = {}
    if lake.sqlite_path:
        found["WAREHOUSE_CATALOG"] = Path(lake.sqlite_path)
    if not lake.on_s3:
        found["WAREHOUSE_DATA_PATH"] = Path(lake.data_path.rstrip("/"))
    return found


def check_writable(variable: str, path: Path) -> None:
    """A real write probe in ``path``'s folder (root passes ``os.access`` everywhere)."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"{variable}={path}: cannot write in {folder} ({reason}); set {variable} to a "
            "writable location"
        ) from None


def prepare() -> None:
    """Everything a pipeline command needs, checked before any request or write."""
    default_dagster_home()
    for variable, path in warehouse_locations().items():
        check_writable(variable, path)
    import callminer_assets.definitions  # noqa: F401 - loading validates every setting


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Figures:
    """What the progress line shows, summed over the partitions run so far."""

    interactions: int = 0
    pending: int = 0
    runs_started: int = 0
    already_paid: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, metadata: Mapping[str, Mapping[str, Any]]) -> None:
        """Add one run's materialisation metadata, keyed by asset path (``a/b``)."""
        self.interactions += _int(metadata.get("callminer/interactions", {}), "dagster/row_count")
        self.pending += _int(metadata.get("callminer/transcripts", {}), "pending")
        evaluations = metadata.get("semarize/evaluations", {})
        started = _int(evaluations, "runs_started")
        per_status = evaluations.get("per_status")
        total = sum(per_status.values()) if isinstance(per_status, dict) else started
        self.runs_started += started
        self.already_paid += max(total - started, 0)


def _int(metadata: Mapping[str, Any], key: str) -> int:
    value = metadata.get(key)
    return int(value) if isinstance(value, int | float) else 0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
        if minutes >= 60
        else f"{minutes}:{secs:02d}"
    )


class Progress:
    """A bar redrawn in place on a terminal; else one line per ``DAYS_PER_LINE`` days."""

    def __init__(self, total: int, out: TextIO, tty: bool) -> None:
        self.total, self.out, self.tty = total, out, tty
        self.done = 0
        self.figures = Figures()
        self.t0 = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else math.nan
        f = self.figures
        return (
            f"days {self.done:>{len(str(self.total))}}/{self.total}  "
            f"interactions {f.interactions:,}  transcripts pending {f.pending:,}  "
            f"semarize runs {f.runs_started:,} started / {f.already_paid:,} already paid  "
            f"{_clock(elapsed)} elapsed"
            + ("" if math.isnan(eta) or self.done == self.total else f", ETA {_clock(eta)}")
        )

    def day_done(self, metadata: Mapping[str, Mapping[str, Any]]) -> None:
        self.done += 1
        self.figures.add(metadata)
        if self.tty:
            width = 24
            filled = width * self.done // self.total
            bar = "#" * filled + "." * (width - filled)
            end = "\n" if self.done == self.total else ""
            self.out.write(f"\r\x1b[K[{bar}] {self.line()}{end}")
            self.out.flush()
        elif self.done % DAYS_PER_LINE == 0 or self.done == self.total:
            print(self.line(), file=self.out, flush=True)

    def interrupted(self) -> None:
        if self.tty and 0 < self.done < self.total:
            self.out.write("\n")


class RunFailed(Exception):
    """A Dagster run failed; the message is the one line that matters."""


class Runner:
    """Runs named jobs in process; their event stream goes to ``log`` unless ``verbose``."""

    def __init__(self, log_path: Path | None, window: str) -> None:
        import dagster as dg

        from callminer_assets.definitions import defs

        self.defs = defs
        self.instance = dg.DagsterInstance.get()
        self.log_path = log_path
        self.tags = {TRIGGER_TAG: "cli", WINDOW_TAG: window}

    @contextlib.contextmanager
    def _captured(self) -> Iterator[None]:
        if self.log_path is None:
            yield
            return
        with (
            self.log_path.open("a", encoding="utf-8") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            yield

    def run(self, job: str, partitions: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        """One run over ``partitions`` (none, one, or a consecutive range), or RunFailed.

        Returns the metadata values of what it materialised, by asset path; over a range a
        later partition's value replaces an earlier one (:meth:`run_by_partition` keeps them
        apart).
        """
        merged: dict[str, dict[str, Any]] = {}
        for per_asset in self.run_by_partition(job, partitions).values():
            for asset, values in per_asset.items():
                merged.setdefault(asset, {}).update(values)
        return merged

    def run_by_partition(
        self, job: str, partitions: Sequence[str] = ()
    ) -> dict[str | None, dict[str, dict[str, Any]]]:
        """One run; partition -> asset path -> metadata values of its materialisation."""
        from callminer_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG

        job_def = self.defs.resolve_job_def(job)
        tags = dict(self.tags)
        if len(partitions) > 1:  # what a backfill sends for a range run
            tags |= {RANGE_START_TAG: partitions[0], RANGE_END_TAG: partitions[-1]}
        with self._captured():
            result = job_def.execute_in_process(
                instance=self.instance,
                partition_key=partitions[0] if len(partitions) == 1 else None,
                tags=tags,
                raise_on_error=False,
            )
        if not result.success:
            span = partitions[0] + (f"..{partitions[-1]}" if len(partitions) > 1 else "")
            label = f"{job} {span}" if partitions else job
            raise RunFailed(f"{label}: {failure_line(result)}")
        out: dict[str | None, dict[str, dict[str, Any]]] = {}
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            values = {k: v.value for k, v in materialization.metadata.items()}
            asset = materialization.asset_key.to_user_string()
            out.setdefault(materialization.partition, {}).setdefault(asset, {}).update(values)
        return out


def _progress_figures(metadata: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The few values the progress line needs (small and picklable, for the child's queue)."""
    return {
        asset: {k: metadata[asset][k] for k in keys if k in metadata[asset]}
        for asset, keys in _PROGRESS_KEYS.items()
        if asset in metadata
    }


def _days_in_child(runs: list[list[str]], log: str | None, window: str, out: Any) -> None:
    """A child process: one run per list of days; each day's figures (or the failure line)
    to ``out``."""
    from callminer_assets.definitions import DAILY_JOB

    with contextlib.ExitStack() as stack:
        if log is not None:  # also what imports and warnings print, not only the runs
            stream = stack.enter_context(open(log, "a", encoding="utf-8"))  # noqa: SIM115
            stack.enter_context(contextlib.redirect_stdout(stream))
            stack.enter_context(contextlib.redirect_stderr(stream))
        runner = Runner(Path(log) if log else None, window)
        from callminer_assets.defs.recovery import stop_waiting_runs_on_signal

        stop_waiting_runs_on_signal(runner.instance)  # a signal ends a run waiting for a slot
        try:
            for days in runs:
                figures = runner.run_by_partition(DAILY_JOB.name, days)
                for day in days:
                    out.put(("day", _progress_figures(figures.get(day, {}))))
        except RunFailed as exc:
            out.put(("failed", str(exc)))


def run_days(
    days: list[date],
    log: Path | None,
    window: str,
    progress: Progress,
    days_per_run: int = DAYS_PER_RUN,
) -> None:
    """Every day: runs of ``days_per_run`` days, ``RUNS_PER_PROCESS`` of them in each fresh
    child process; RunFailed on a failure."""
    spawn = multiprocessing.get_context("spawn")
    keys = [d.isoformat() for d in days]
    runs = [keys[i : i + days_per_run] for i in range(0, len(keys), days_per_run)]
    for i in range(0, len(runs), RUNS_PER_PROCESS):
        batch = runs[i : i + RUNS_PER_PROCESS]
        out = spawn.Queue()
        child = spawn.Process(
            target=_days_in_child, args=(batch, str(log) if log else None, window, out)
        )
        child.start()
        with _forwarding_signals(child):
            for _ in range(sum(len(r) for r in batch)):
                kind, payload = _receive(out, child)
                if kind == "failed":
                    raise RunFailed(payload)
                progress.day_done(payload)


@contextlib.contextmanager
def _forwarding_signals(child: Any) -> Iterator[None]:
    """SIGTERM/SIGINT go to the child (which marks its run and frees its slot); then this
    process exits with the signal's status, as an in-process run would."""

    def forward(signum: int, frame: Any) -> None:
        os.kill(child.pid, signum)
        child.join(timeout=60)
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        child.join()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _receive(out: Any, child: Any) -> tuple[str, Any]:
    while True:
        try:
            return out.get(timeout=1)
        except queue.Empty:
            if not child.is_alive():
                raise RunFailed(
                    f"the process running the days exited with status {child.exitcode}"
                ) from None


def failure_line(result: Any) -> str:
    """The innermost error of the first failed step, on one line (its class, short)."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            lines = (error.message or "").strip().splitlines() or ["failed"]
            kind, _, message = lines[0].partition(": ")
            short = f"{kind.rsplit('.', 1)[-1]}: {message}" if message else lines[0]
            return f"step {event.step_key} failed: {short}"
    return f"run {result.run_id} failed"


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def whole_months(start: date, end: date) -> list[str]:
    """Monthly partitions the window covers entirely (a half month is not a month's features)."""
    from callminer_assets.defs.partitions import monthly_partitions

    existing = set(monthly_partitions.get_partition_keys())
    months, month = [], start.replace(day=1)
    while month <= end:
        following = (month + timedelta(days=32)).replace(day=1)
        if month >= start and following - timedelta(days=1) <= end:
            months.append(month.isoformat())
        month = following
    return [m for m in months if m in existing]


def run(
    start: date,
    end: date,
    *,
    verbose: bool = False,
    out: TextIO | None = None,
    days_per_run: int = DAYS_PER_RUN,
) -> bool:
    """The days a week per run, the whole months, the models, the months' reports; False on
    a failure."""
    from callminer_assets.definitions import MODELS_JOB, MONTHLY_JOB, REPORTS_JOB
    from callminer_assets.defs.recovery import recover, stop_waiting_runs_on_signal

    out = out or sys.stdout
    log_path = None
    if not verbose:
        logs = Path(os.environ["DAGSTER_HOME"]) / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
        print(f"Dagster's event log: {log_path}", file=out, flush=True)
    runner = Runner(log_path, f"{start}..{end}")
    if done := recover(runner.instance):  # a killed earlier run must not wedge this one
        print(done.describe(), file=out, flush=True)
    stop_waiting_runs_on_signal(runner.instance)
    days = _days(start, end)
    plural = "s" if len(days) != 1 else ""
    print(
        f"{len(days)} day{plural} {start} .. {end}, one run per {days_per_run} days",
        file=out,
        flush=True,
    )
    progress = Progress(len(days), out, tty=out.isatty())
    t0 = time.monotonic()
    try:
        run_days(days, log_path, runner.tags[WINDOW_TAG], progress, days_per_run)
        months = whole_months(start, end)
        if months:
            runner.run(MONTHLY_JOB.name, months)
            print(f"months {months[0][:7]} .. {months[-1][:7]}: features and consistency", file=out)
        else:
            print("no whole, finished month in the window: no monthly features", file=out)
        model = runner.run(MODELS_JOB.name).get("analytics/attrition_model", {})
        print(f"attrition model: {_model_line(model)}", file=out)
        reports = runner.run_by_partition(REPORTS_JOB.name, months) if months else {}
        for month in months:
            report = reports.get(month, {}).get("analytics/monthly_report", {})
            print(f"report {month[:7]}: {report.get('path', '(not written)')}", file=out)
    except RunFailed as exc:
        progress.interrupted()
        print(f"FAILED {exc}", file=out)
        if log_path is not None:
            print(f"the full event log: {log_path}", file=out)
        return False
    print(f"done in {_clock(time.monotonic() - t0)}\n", file=out, flush=True)
    return True


def _model_line(metadata: Mapping[str, Any]) -> str:
    if "skipped" in metadata:
        return f"not trained ({metadata['skipped']})"
    version = metadata.get("model_version", "?")
    if metadata.get("retrained") is False:
        return f"inputs unchanged, kept version {version}"
    auc = metadata.get("roc_auc")
    return f"trained version {version}" + (f" (ROC AUC {auc:.3f})" if auc is not None else "")


# -- summary ------------------------------------------------------------------------------------


def summary() -> str:
    """Rows per table and the headline numbers, read as an analyst reads them."""
    from callminer_assets.lib.tables import TABLES
    from callminer_assets.warehouse.store import connect

    con = connect()
    try:
        present = {
            f"{s}.{n}"
            for s, n in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = current_database()"
            ).fetchall()
        }
        lines = ["table                                  rows"]
        for name in TABLES:
            if name in present:
                (n,) = con.execute(f"SELECT count(*) FROM {name}").fetchone() or (0,)  # noqa: S608 - names from schema.py
                lines.append(f"{name:<38} {n:>8}")
        if "callminer.transcripts" in present:
            for status, n in con.execute(
                "SELECT status, count(*) FROM callminer.transcripts GROUP BY 1 ORDER BY 1"
            ).fetchall():
                lines.append(f"transcripts {status:<26} {n:>8}")
        if "semarize.evaluations" in present:
            (n,) = con.execute(
                "SELECT count(DISTINCT interaction_id) FROM semarize.evaluations WHERE status = 'succeeded'"
            ).fetchone() or (0,)
            lines.append(f"{'interactions evaluated':<38} {n:>8}")
        if "analytics.interaction_scores" in present:
            lines.append("mean compliance by channel:")
            for channel, mean, n in con.execute(
                "SELECT channel, avg(compliance_score), count(*) FROM analytics.interaction_scores "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall():
                score = "n/a" if mean is None else f"{mean:.3f}"
                lines.append(f"  {channel!s:<8} {score}  ({n} interactions)")
    finally:
        con.close()
    return "\n".join(lines)


def _print_summary() -> int:
    from callminer_assets.lib.settings import WarehouseSettings
    from callminer_assets.warehouse.store import attach_sql

    try:
        print(summary())
    except ConfigError as exc:  # no lake yet
        print(exc, file=sys.stderr)
        return 1
    lake = WarehouseSettings.from_env()
    # A Postgres catalog string may hold a password: only the embedded lake's SQL is shown.
    print(
        f"\nwarehouse: {attach_sql(lake, read_only=True) if lake.sqlite_path else lake.data_path}"
    )
    print(
        'query it:  .venv/bin/python -c "import callminer_assets as ca; '
        "print(ca.connect().sql('SELECT channel, count(*) FROM callminer.interactions GROUP BY 1'))\""
    )
    print("open the UI: make dev  ->  http://127.0.0.1:3000")
    return 0


# -- the commands -------------------------------------------------------------------------------


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=_day, required=True, help="first UTC day, YYYY-MM-DD")
    p.add_argument("--end", type=_day, required=True, help="last UTC day (inclusive)")
    p.add_argument(
        "--days-per-run",
        type=_positive,
        default=DAYS_PER_RUN,
        metavar="N",
        help=(
            "days one Dagster run covers (default %(default)s); a run holds its days in memory, "
            "so lower it for very large tenants (1: one run per day)"
        ),
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="Dagster's full event stream on the terminal instead of the log file",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


@command("run", "materialise every asset for a date range, then print a summary", _run_arguments)
def _run(args: argparse.Namespace) -> int:
    from callminer_assets.defs.partitions import daily_partitions

    if args.end < args.start:
        raise ConfigError(f"--end {args.end} is before --start {args.start}: swap them")
    first = daily_partitions.get_first_partition_key()
    if first and str(args.start) < first:
        raise ConfigError(
            f"--start {args.start} is before the first partition {first}: "
            f"set CALLMINER_START_DATE={args.start} or start later"
        )
    last = daily_partitions.get_last_partition_key()
    if last and str(args.end) > last:
        raise ConfigError(f"--end {args.end} is after today's partition {last}: end earlier")
    if not run(args.start, args.end, verbose=args.verbose, days_per_run=args.days_per_run):
        return 1
    return _print_summary()


@command("summary", "print the warehouse summary only", pipeline=False)
def _summary(args: argparse.Namespace) -> int:
    return _print_summary()


def _migrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", help="the old warehouse file, e.g. data/callminer.duckdb")


@command(
    "migrate-warehouse",
    "copy an old DuckDB warehouse into the lake",
    _migrate_arguments,
    pipeline=False,
)
def _migrate(args: argparse.Namespace) -> int:
    from callminer_assets.warehouse.migrate import migrate

    print(migrate(args.old))
    return 0


def _register_rescore() -> None:
    from callminer_assets import rescore

    command("rescore", "re-score stored transcripts with a kit's new version", rescore.arguments)(
        rescore.command
    )


_register_rescore()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m callminer_assets",
        description="Run the callminer-assets pipeline headless (sandbox unless credentials are set).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name, help=cmd.help, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        if cmd.arguments is not None:
            cmd.arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cmd = COMMANDS[args.command]
    try:
        if cmd.pipeline:
            prepare()
        return cmd.handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
