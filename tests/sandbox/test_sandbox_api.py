"""The sandbox over real loopback HTTP: every contract variant and every fault."""

from __future__ import annotations

import email.utils
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from callminer_assets.kits import current_kits
from callminer_assets.kits.loader import PACKAGED_DIR
from callminer_assets.sandbox import SandboxConfig, SandboxServer, serve
from callminer_assets.sandbox.app import TRANSPORT_FAULTS

from .sandbox_helpers import Api

DAY = ("2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z")
SMZ = {"Authorization": "Bearer smz_test_sandbox"}


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    with serve(SandboxConfig(per_day=120, pending_fraction=0.0, short_page_rate=0.3)) as s:
        yield s


@pytest.fixture
def api(srv: SandboxServer) -> Iterator[Api]:
    a = Api(srv)
    yield a
    a.close()


def _ids(entries: list) -> list[str]:
    return [e["id"] for e in entries if isinstance(e, dict) and "id" in e]


# --- auth --------------------------------------------------------------------------------------
def test_token_and_invalid_client(srv: SandboxServer) -> None:
    with httpx.Client(base_url=srv) as c:
        ok = c.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox",
                "client_secret": "sandbox",
            },
        )
        assert ok.status_code == 200
        body = ok.json()
        assert (
            body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["access_token"]
        )
        bad = c.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "sandbox",
                "client_secret": "nope",
            },
        )
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        nobody = c.get("/v1/interactions", params={"startDate": DAY[0], "endDate": DAY[1]})
        assert nobody.status_code == 401 and nobody.json()["error"] == "invalid_token"
        forged = c.get("/v1/interactions", headers={"Authorization": "Bearer forged"})
        assert forged.status_code == 401


def test_token_expiry_and_credential_override() -> None:
    cfg = SandboxConfig(token_ttl=0.3, client_id="me", client_secret="s3cret")
    with serve(cfg) as s, httpx.Client(base_url=s) as c:
        form = {
            "grant_type": "client_credentials",
            "client_id": "sandbox",
            "client_secret": "sandbox",
        }
        assert c.post("/oauth/token", data=form).status_code == 401
        form.update(client_id="me", client_secret="s3cret")
        tok = c.post("/oauth/token", data=form).json()
        assert tok["expires_in"] == 0.3
        h = {"Authorization": f"Bearer {tok['access_token']}"}
        q = {"startDate": DAY[0], "endDate": DAY[1]}
        assert c.get("/v1/interactions", params=q, headers=h).status_code == 200
        time.sleep(0.35)
        r = c.get("/v1/interactions", params=q, headers=h)
        assert r.status_code == 401 and r.json()["error"] == "invalid_token"
        assert s.state.tokens_issued == 1


# --- listing -------------------------------------------------------------------------------------
def test_token_pagination_caps_and_short_pages(srv: SandboxServer, api: Api) -> None:
    entries, pages = api.list_all(*DAY, limit=1000)
    ids = _ids(entries)
    assert len(ids) == len(set(ids)) == 120
    assert all(i.startswith("INT-20260310-") for i in ids)
    sizes = [len(p["interactions"]) for p in pages]
    assert max(sizes) <= srv.state.config.max_page_size
    entries, pages = api.list_all(*DAY, limit=10)
    assert len(set(_ids(entries))) == 120
    assert any(len(p["interactions"]) < 10 for p in pages[:-1]), "expected short pages"
    # startDate inclusive, endDate exclusive, any offset; records carry the contract fields
    rec = entries[0]
    assert {"id", "channel", "startTime", "agentName", "direction", "customerId"} <= rec.keys()


@pytest.mark.parametrize(
    ("pagination", "key"),
    [("offset", "items"), ("bare", None), ("offset", "data"), ("token", "data")],
)
def test_pagination_styles_and_array_keys(pagination: str, key: str | None) -> None:
    cfg = SandboxConfig(per_day=60, pagination=pagination, array_key=key or "interactions")  # type: ignore[arg-type]
    with serve(cfg) as s:
        a = Api(s)
        entries, pages = a.list_all(*DAY, limit=25)
        a.close()
    assert len(set(_ids(entries))) == 60 == len(entries)
    if pagination == "bare":
        assert all(isinstance(p, list) for p in pages)
    else:
        assert all(key in p for p in pages)
        if pagination == "offset":
            assert pages[0]["total"] == 60 and pages[0]["offset"] == 0


def test_listing_bad_requests(api: Api) -> None:
    assert (
        api.get("/v1/interactions", {"startDate": "yesterday", "endDate": DAY[1]}).status_code
        == 400
    )
    r = api.get("/v1/interactions", {"startDate": DAY[0], "endDate": DAY[1], "nextPage": "garbage"})
    assert r.status_code == 400


def test_listing_window_by_utc_and_offsets(api: Api) -> None:
    entries, _ = api.list_all("2026-03-10T06:00:00+00:00", "2026-03-10T12:00:00+00:00")
    for e in entries:
        t = datetime.fromisoformat(e["startTime"]).astimezone(UTC)
        assert datetime(2026, 3, 10, 6, tzinfo=UTC) <= t < datetime(2026, 3, 10, 12, tzinfo=UTC)
    full, _ = api.list_all(*DAY)
    local_dates = {datetime.fromisoformat(e["startTime"]).date().isoformat() for e in full}
    assert local_dates - {"2026-03-10"}, "some offsets must move the local date"


# --- transcripts -------------------------------------------------------------------------------
def test_transcript_shapes_per_channel(api: Api) -> None:
    entries, _ = api.list_all(*DAY)
    seen: set[str] = set()
    for e in entries:
        ch = e["channel"].lower()
        if ch in seen:
            continue
        r = api.get(f"/v1/interactions/{e['id']}/transcript")
        assert r.status_code == 200
        body = r.json()
        assert body["interactionId"] == e["id"] and body["utterances"]
        utts = body["utterances"]
        if ch in ("voice", "video"):
            assert body["format"] == "ovts"
            assert all(isinstance(u["startTime"], float | int) for u in utts)
            assert {u["speakerRole"] for u in utts} <= {"agent", "customer"}
            if ch == "voice":
                assert 20 <= len(utts) <= 150
        elif ch == "chat":
            for u in utts:
                datetime.fromisoformat(u["startTime"])
        else:
            assert "duration" not in e or e["duration"] is None
            assert e["mailbox"]
            assert all("from" in u and isinstance(u["to"], list) for u in utts)
            assert all(u.get("speakerRole") is None for u in utts)
        seen.add(ch)
    assert seen == {"voice", "chat", "email", "video"}
    assert api.get("/v1/interactions/INT-20260310-99999/transcript").status_code == 404


def test_chat_end_times_sometimes_missing(api: Api) -> None:
    entries, _ = api.list_all(*DAY)
    missing = 0
    for e in entries:
        if e["channel"].lower() == "chat":
            utts = api.get(f"/v1/interactions/{e['id']}/transcript").json()["utterances"]
            missing += sum("endTime" not in u for u in utts)
    assert missing > 0


def test_pending_then_available() -> None:
    cfg = SandboxConfig(per_day=30, pending_fraction=1.0, pending_fetches=2)
    with serve(cfg) as s:
        a = Api(s)
        entries, _ = a.list_all(*DAY)
        statuses: Counter[int] = Counter()
        for e in entries[:12]:
            path = f"/v1/interactions/{e['id']}/transcript"
            for _ in range(2):
                r = a.get(path)
                assert r.status_code in (404, 202, 200)
                if r.status_code != 404:
                    assert r.json()["status"] == "processing" and "utterances" not in r.json()
                statuses[r.status_code] += 1
            r = a.get(path)
            assert r.status_code == 200 and r.json()["utterances"]
        assert set(statuses) == {404, 202, 200}
        # wall clock: an interaction that ended moments ago is still being transcribed
        s.state.clock = lambda: datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
        s.state.faults.pending_fraction = 0.0
        r = a.get(f"/v1/interactions/{entries[-1]['id']}/transcript")
        assert r.status_code in (404, 202) or r.json().get("status") == "processing"
        a.close()


# --- semarize -----------------------------------------------------------------------------------
TEXT = (
    "agent: Thank you for calling Northwind Telecom. This call may be recorded.\n"
    "customer: I was charged twice on my bill.\n"
    "agent: I'm sorry to hear that. That's been resolved now."
)


def _run(
    c: httpx.Client, mode: str, text: str = TEXT, key: str | None = None, **kw: object
) -> httpx.Response:
    headers = dict(SMZ)
    if key:
        headers["Idempotency-Key"] = key
    body = {
        "kit_code": "qa_compliance",
        "mode": mode,
        "input": {"transcript": text},
        "metadata": {"interaction_id": "INT-1", "campaign": "inbound_care"},
        **kw,
    }
    return c.post("/v1/runs", json=body, headers=headers)


def test_semarize_lists_the_kits_in_force(
    srv: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with httpx.Client(base_url=srv) as c:
        assert c.get("/v1/kits").status_code == 401
        listed = {k["code"]: k for k in c.get("/v1/kits", headers=SMZ).json()["kits"]}
        assert {code: k["version"] for code, k in listed.items()} == {
            code: kit.version for code, kit in current_kits().items()
        }
        assert listed["qa_compliance"]["bricks"][-1] == "compliance_score"
        assert datetime.fromisoformat(listed["qa_compliance"]["updated_at"]).tzinfo is not None
        folder = tmp_path / "kits"
        folder.mkdir()
        text = (PACKAGED_DIR / "agent_wellbeing.yaml").read_text()
        (folder / "aw.yaml").write_text(text.replace("AW-v2026.1", "AW-v2026.2"))
        monkeypatch.setenv("KITS_DIR", str(folder))
        listed = {k["code"]: k for k in c.get("/v1/kits", headers=SMZ).json()["kits"]}
        assert listed["agent_wellbeing"]["version"] == "AW-v2026.2"
        body = {"kit_code": "agent_wellbeing", "mode": "sync", "input": {"transcript": TEXT}}
        assert c.post("/v1/runs", json=body, headers=SMZ).json()["kit_version"] == "AW-v2026.2"


def test_semarize_sync_async_idempotency_and_billing(srv: SandboxServer) -> None:
    with httpx.Client(base_url=srv) as c:
        r = _run(c, "sync")
        assert r.status_code == 200
        run = r.json()
        assert (
            run["status"] == "succeeded"
            and run["kit_version"] == current_kits()["qa_compliance"].version
        )
        assert run["bricks"]["recording_disclosure"]["value"] is True
        assert run["bricks"]["recording_disclosure"]["evidence"][0]["utterance_index"] == 0
        assert set(run["bricks"]) == set(current_kits()["qa_compliance"].bricks)
        assert run["usage"]["input_tokens"] > 0
        a = _run(c, "async", text=TEXT + "\ncustomer: ok", key="k1")
        assert a.status_code == 202 and a.json()["status"] == "queued"
        rid = a.json()["id"]
        again = _run(c, "async", text=TEXT + "\ncustomer: ok", key="k1")
        assert again.json()["id"] == rid
        polls = [c.get(f"/v1/runs/{rid}", headers=SMZ).json()["status"] for _ in range(3)]
        assert polls == ["running", "succeeded", "succeeded"]
        assert srv.state.billed(TEXT + "\ncustomer: ok", "qa_compliance") == 1
        assert srv.state.billed(TEXT, "qa_compliance") == 1
        assert c.get("/v1/runs/run_nope", headers=SMZ).status_code == 404


def test_semarize_keeps_only_the_newest_runs_but_every_idempotency_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Memory stays bounded; a replay of a run no longer held is the same run, not billed."""
    monkeypatch.setattr("callminer_assets.sandbox.app.RUNS_KEPT", 3)
    with serve(SandboxConfig()) as s, httpx.Client(base_url=s) as c:
        texts = [f"{TEXT}\ncustomer: number {i}" for i in range(5)]
        first = [_run(c, "sync", text=t, key=f"k{i}").json() for i, t in enumerate(texts)]
        assert len(s.state.runs) == 3 and len(s.state.idempotency) == 5
        assert c.get(f"/v1/runs/{first[0]['id']}", headers=SMZ).status_code == 404
        replay = _run(c, "async", text=texts[0], key="k0")
        assert replay.status_code == 202
        assert replay.json()["id"] == first[0]["id"]
        assert replay.json()["bricks"] == first[0]["bricks"]
        assert s.state.runs_started == 5 and s.state.billed(texts[0], "qa_compliance") == 1
        assert len(s.state.runs) == 3


def test_semarize_errors(srv: SandboxServer) -> None:
    with httpx.Client(base_url=srv) as c:
        started = srv.state.runs_started
        r = _run(c, "sync", text="  ")
        assert r.status_code == 422 and r.json()["error"]["code"] == "empty_transcript"
        bad = c.post(
            "/v1/runs",
            json={"kit_code": "qa_compliance"},
            headers={"Authorization": "Bearer smz_live_x"},
        )
        assert bad.status_code == 401
        assert _run(c, "sync", kit_code="nope").status_code == 422
        assert srv.state.runs_started == started


def test_semarize_failed_runs_and_sync_timeout() -> None:
    with serve(SandboxConfig(failed_run_rate=1.0)) as s, httpx.Client(base_url=s) as c:
        run = _run(c, "sync").json()
        assert run["status"] == "failed" and run["error"]["code"]
    with serve(SandboxConfig(sync_timeout_rate=1.0)) as s, httpx.Client(base_url=s) as c:
        r = _run(c, "sync", key="same")
        assert r.status_code == 504
        rid = r.json()["id"]
        done = c.get(f"/v1/runs/{rid}", headers=SMZ).json()
        done = c.get(f"/v1/runs/{rid}", headers=SMZ).json()
        assert done["status"] == "succeeded"
        assert _run(c, "sync", key="same").json()["id"] == rid
        assert s.state.runs_started == 1


# --- faults -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["429", "429-date", "500", "502", "503", "504"])
def test_injected_status_faults(srv: SandboxServer, api: Api, kind: str) -> None:
    api.fetch_token()
    srv.state.inject(kind, path="/v1/interactions")
    r = api.http.get(
        "/v1/interactions",
        params={"startDate": DAY[0], "endDate": DAY[1]},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert r.status_code == int(kind[:3])
    if kind == "429":
        assert r.headers["Retry-After"] == "1"
    if kind == "429-date":
        when = email.utils.parsedate_to_datetime(r.headers["Retry-After"])
        assert abs((when - datetime.now(UTC)).total_seconds()) < 5
    assert srv.state.request_log[-1]["fault"] == kind


def test_dropped_connection_slow_and_early_invalid_token(srv: SandboxServer, api: Api) -> None:
    api.fetch_token()
    h = {"Authorization": f"Bearer {api.token}"}
    q: dict[str, str | int] = {"startDate": DAY[0], "endDate": DAY[1], "limit": 5}
    srv.state.inject("drop")
    with pytest.raises(httpx.TransportError):
        api.http.get("/v1/interactions", params=q, headers=h)
    assert api.http.get("/v1/interactions", params=q, headers=h).status_code == 200
    srv.state.inject("slow")
    t0 = time.monotonic()
    assert api.http.get("/v1/interactions", params=q, headers=h).status_code == 200
    assert time.monotonic() - t0 >= srv.state.faults.slow_ms / 1000
    srv.state.inject("invalid_token")
    r = api.http.get("/v1/interactions", params=q, headers=h)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert api.http.get("/v1/interactions", params=q, headers=h).status_code == 401  # revoked
    with pytest.raises(ValueError):
        srv.state.inject("meteor")


def test_rate_limiter_sliding_window() -> None:
    with serve(SandboxConfig(rate_limit=5)) as s, httpx.Client(base_url=s) as c:
        codes = [c.get("/v1/runs/x", headers=SMZ).status_code for _ in range(12)]
        assert codes[:5] == [404] * 5 and codes.count(429) >= 6
        assert c.get("/v1/runs/x", headers=SMZ).headers.get("Retry-After") == "1"
        time.sleep(1.05)
        assert c.get("/v1/runs/x", headers=SMZ).status_code == 404


def test_each_api_has_its_own_limit_and_log() -> None:
    """Semarize's kit listing shares the port but not CallMiner's second (nor its log)."""
    with serve(SandboxConfig(rate_limit=3)) as s, httpx.Client(base_url=s) as c:
        kits = [c.get("/v1/kits", headers=SMZ).status_code for _ in range(3)]
        runs = c.get("/v1/runs/x", headers=SMZ).status_code
        callminer = c.get("/v1/interactions", params={"startDate": DAY[0]}).status_code
        services = Counter(e["service"] for e in s.state.request_log)
    assert kits == [200] * 3 and runs == 429  # the 4th Semarize request in one second
    assert callminer == 401  # refused for its missing token, not rate-limited
    assert services == {"semarize": 4, "callminer": 1}
    assert s.state.busiest_second("callminer") == 1


@pytest.mark.parametrize("pagination", ["token", "offset"])
def test_transport_faults_never_lose_records(pagination: str) -> None:
    cfg = SandboxConfig(
        per_day=150,
        faults="transport",
        fault_rate=0.3,
        retry_after_s=0,
        slow_ms=20,
        drift_rate=0.3,
        pagination=pagination,  # type: ignore[arg-type]
    )
    with serve(cfg) as s:
        a = Api(s)
        entries, _ = a.list_all(*DAY, limit=10)
        a.close()
        faults = Counter(e["fault"] for e in s.state.request_log if e["fault"])
    ids = _ids(entries)
    assert len(set(ids)) == 150
    assert len(ids) > 150, "page drift should repeat some records"
    assert sum(faults.values()) >= 3, faults
    assert set(faults) <= set(TRANSPORT_FAULTS)


def test_hostile_data() -> None:
    with serve(SandboxConfig(per_day=100, faults="hostile", fault_rate=0.0)) as s:
        a = Api(s)
        entries, _ = a.list_all(*DAY)
        good = [e for e in entries if isinstance(e, dict) and "id" in e]
        assert any(not isinstance(e, dict) for e in entries)
        assert any(isinstance(e, dict) and "id" not in e for e in entries)
        assert any(e.get("channel") == "fax" for e in good)
        assert any(e.get("startTime") == "yesterday-ish" for e in good)
        blob = json.dumps(entries, ensure_ascii=False)
        assert "DROP TABLE" in blob and "\\u0000" in blob and "你好" in blob
        texts = []
        for e in good[:40]:
            r = a.get(f"/v1/interactions/{e['id']}/transcript")
            if r.status_code == 200 and "utterances" in r.json():
                texts += [u["text"] for u in r.json()["utterances"]]
        assert any(ch in t for t in texts for ch in ("\x00", "\n", "\t", "'", "😡"))
        a.close()


def test_request_log_never_holds_secrets(srv: SandboxServer, api: Api) -> None:
    api.list_all(*DAY, limit=100)
    with httpx.Client(base_url=srv) as c:
        _run(c, "sync")
    log = json.dumps(srv.state.request_log)
    assert api.token and api.token not in log
    assert "smz_test_sandbox" not in log and "client_secret" not in log and "Bearer" not in log
    assert {"method", "path", "status", "time"} <= srv.state.request_log[0].keys()


# --- determinism -------------------------------------------------------------------------------
def _raw(s: SandboxServer, paths: list[tuple[str, dict[str, object]]]) -> list[bytes]:
    a = Api(s)
    out = [a.get(p, q).content for p, q in paths]
    a.close()
    return out


def test_same_seed_byte_identical_other_dates_differ() -> None:
    cfg = SandboxConfig(per_day=50, pending_fraction=0.0)
    paths: list[tuple[str, dict[str, object]]] = [
        ("/v1/interactions", {"startDate": DAY[0], "endDate": DAY[1], "limit": 20}),
        ("/v1/interactions/INT-20260310-00007/transcript", {}),
        (
            "/v1/interactions",
            {"startDate": "2026-03-11T00:00:00Z", "endDate": "2026-03-12T00:00:00Z"},
        ),
    ]
    with serve(cfg) as s1:
        first = _raw(s1, paths)
    with serve(cfg) as s2:
        second = _raw(s2, paths)
    assert first == second
    assert first[0] != first[2]
    with serve(SandboxConfig(per_day=50, seed=99, pending_fraction=0.0)) as s3:
        assert _raw(s3, paths)[0] != first[0]
