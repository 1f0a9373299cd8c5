"""Deterministic synthetic contact-centre data with real, recoverable signal.

Everything derives from ``seed``: the roster (and each agent's latent traits)
from the seed alone, one UTC day's interactions from ``(seed, day)``, and a
transcript from ``(seed, interaction id)``. So any date window is reproducible
and cheap, and a transcript can be produced on demand without the whole day.
Utterances are written from ``callminer_assets.kits.lexicon``: the kits find
exactly the phrases the latent traits made the agents say.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from callminer_assets.kits import lexicon as lx

DEFAULT_SEED = 42
N_AGENTS = 120  # seats: agents employed at any one time (minus a few vacancies being hired for)
# Staffing simulation: every seat is refilled after its agent leaves, so the headcount stays
# ~N_AGENTS while ~35-40 % of it turns over each year, as in real contact centres. Tenure is a
# mixture: a third of hires leave early (mean ~9 months), the rest stay ~3.7 years on average.
_SIM_START = date(2013, 1, 1)
_SIM_END = date(2040, 12, 31)
_EARLY_LEAVER_SHARE = 0.35
_EARLY_TENURE_DAYS = (60, 200)  # (minimum, mean of the exponential part)
_LONG_TENURE_DAYS = (120, 1200)
_REFILL_DAYS = (7, 42)  # vacancy between a leave and the replacement's hire date
# Pre-leave decline: over the LEAVE_RAMP_DAYS before the leave date the agent's stress rises
# and performance falls; how strongly varies by person and ~8 % leave with no warning at all.
LEAVE_RAMP_DAYS = 120
_SUDDEN_LEAVER_SHARE = 0.08
TEAMS = ("Atlas", "Borealis", "Cedar", "Delta", "Ember", "Fjord")
_FIRST = (
    "Aisha Ben Carla Dev Elena Farid Grace Hiro Ines Jonas Kemi Liam Maya Nils Omar Priya "
    "Quinn Rosa Sami Tara Umar Vera Wei Xena Yusuf Zoe"
).split()
_LAST = (
    "Adams Baker Chen Diaz Evans Fischer Garcia Hughes Ito Jones Khan Lopez Murphy Novak "
    "Okafor Patel Reyes Silva Turner Walsh Young Zhang"
).split()

CHANNEL_WEIGHTS = (("voice", 0.60), ("chat", 0.20), ("email", 0.15), ("video", 0.05))


@dataclass(frozen=True, slots=True)
class ChannelStyle:
    """How a channel shifts what agents and customers do (templates, holds, asynchrony)."""

    slip: float  # multiplies the chance of missing a compliance step (templates help)
    empathy: float  # multiplies the per-turn chance of an empathy statement
    resolution: float  # added to the chance of resolving the contact
    effort: float  # base chance that the customer voices effort (holds, repeats)
    brand: float  # added to the chance of the branded greeting


CHANNEL_STYLE: dict[str, ChannelStyle] = {
    # live voice: the disclosure is said by the agent, so it is forgotten most often
    "voice": ChannelStyle(slip=1.0, empathy=1.0, resolution=0.0, effort=0.30, brand=0.0),
    "video": ChannelStyle(slip=0.9, empathy=1.1, resolution=0.03, effort=0.22, brand=0.05),
    # chat and email use canned openers (disclosure, brand) but are terser and slower to resolve
    "chat": ChannelStyle(slip=0.6, empathy=1.3, resolution=-0.06, effort=0.18, brand=0.15),
    "email": ChannelStyle(slip=0.45, empathy=2.6, resolution=-0.12, effort=0.30, brand=0.25),
}
# campaign -> (topics, direction, queue prefix)
CAMPAIGNS: dict[str, tuple[tuple[str, ...], str]] = {
    "inbound_care": (("billing", "technical", "account", "complaint"), "inbound"),
    "retention": (("cancellation",), "inbound"),
    "collections": (("collections",), "outbound"),
    "winback_sales": (("sales",), "outbound"),
}
CAMPAIGN_WEIGHTS = (
    ("inbound_care", 0.55),
    ("retention", 0.15),
    ("collections", 0.18),
    ("winback_sales", 0.12),
)
QUEUES = {
    "billing": "q_billing",
    "cancellation": "q_retention",
    "technical": "q_tech_support",
    "collections": "q_collections",
    "sales": "q_sales",
    "account": "q_accounts",
    "complaint": "q_complaints",
}
WRAP_UPS = {
    "billing": ("WU-BILL-ADJ", "WU-BILL-EXPLAIN"),
    "cancellation": ("WU-CANCEL-SAVE", "WU-CANCEL-DONE"),
    "technical": ("WU-TECH-RESET", "WU-TECH-VISIT"),
    "collections": ("WU-COLL-PLAN", "WU-COLL-PTP"),
    "sales": ("WU-SALE", "WU-SALE-DECLINED"),
    "account": ("WU-ACCT-UPDATE",),
    "complaint": ("WU-COMPLAINT-LOG",),
}
# (offset hours, minutes) the API renders startTime in; several move the local date.
OFFSETS = ((0, 0), (0, 0), (-5, 0), (-4, 0), (-8, 0), (1, 0), (5, 30), (9, 0), (10, 0), (-3, 0))
MAILBOXES = ("support@northwind.example", "billing@northwind.example")


def _h(*parts: object) -> int:
    """Stable 64-bit hash of the parts (Python's hash() is salted per process)."""
    raw = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def _u(*parts: object) -> float:
    """Stable uniform [0, 1) from the parts."""
    return _h(*parts) / 2**64


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return min(hi, max(lo, x))


def _weighted(rng: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    x = rng.random() * sum(w for _, w in options)
    for name, w in options:
        x -= w
        if x < 0:
            return name
    return options[-1][0]


@dataclass(frozen=True, slots=True)
class Agent:
    """A roster row plus the latent traits that drive what the agent says."""

    agent_id: str
    agent_name: str
    team: str
    hire_date: date
    leave_date: date | None
    compliance: float
    empathy: float
    stress_base: float
    receptivity: float
    stress_walk: tuple[float, ...]  # monthly stress drift from the hire month on
    leave_drift: float = 1.0  # strength of the pre-leave decline (0: leaves without warning)

    def employed_on(self, day: date) -> bool:
        return self.hire_date <= day and (self.leave_date is None or day < self.leave_date)


@dataclass(frozen=True, slots=True)
class Traits:
    """An agent's effective traits on one day (drifted stress, pre-leaving decline)."""

    compliance: float
    empathy: float
    stress: float
    receptivity: float
    leaving_ramp: float  # 0 normally, rising to 1 on the leave date


@dataclass(frozen=True, slots=True)
class Spec:
    """Everything needed to render one interaction's transcript on demand."""

    interaction_id: str
    channel: str
    start: datetime
    duration: float
    agent: Agent
    traits: Traits
    campaign: str
    topic: str
    resolved: bool
    n_utterances: int
    mailbox: str | None
    customer_email: str


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def _tenure_days(rng: random.Random) -> int:
    lo, mean = _EARLY_TENURE_DAYS if rng.random() < _EARLY_LEAVER_SHARE else _LONG_TENURE_DAYS
    return lo + int(rng.expovariate(1.0 / mean))


def build_roster(seed: int = DEFAULT_SEED, n_agents: int = N_AGENTS) -> tuple[Agent, ...]:
    """Everyone who ever held one of ``n_agents`` seats between 2013 and 2040.

    Each seat starts filled (hired 2008-2012) and is refilled a few weeks after its agent
    leaves, so about ``n_agents`` are employed on any day and each month of any year has
    several leavers and hires. Ids are assigned in hire order; the latent traits are drawn
    per agent (compliance discipline skewed high: most agents follow the script, a minority
    does not).
    """
    rng = random.Random(_h(seed, "roster"))
    stints: list[tuple[date, date | None, int]] = []
    for seat in range(n_agents):
        hire = _SIM_START - timedelta(days=rng.randrange(5 * 365))
        leave = hire + timedelta(days=_tenure_days(rng))
        while leave <= _SIM_START:  # the seat's first occupant is whoever holds it in 2013
            hire = leave + timedelta(days=rng.randint(*_REFILL_DAYS))
            leave = hire + timedelta(days=_tenure_days(rng))
        while True:
            if leave > _SIM_END:
                stints.append((hire, None, seat))
                break
            stints.append((hire, leave, seat))
            hire = leave + timedelta(days=rng.randint(*_REFILL_DAYS))
            leave = hire + timedelta(days=_tenure_days(rng))
    stints.sort(key=lambda t: (t[0], t[2]))
    agents: list[Agent] = []
    for i, (hired, left, seat) in enumerate(stints, start=1):
        arng = random.Random(_h(seed, "agent", i))
        months = _month_index(left or _SIM_END) - _month_index(hired) + 1
        walk = [0.0]
        for _ in range(months - 1):
            walk.append(_clamp(walk[-1] + arng.uniform(-0.06, 0.06), -0.25, 0.25))
        sudden = arng.random() < _SUDDEN_LEAVER_SHARE
        agents.append(
            Agent(
                agent_id=f"AG-{i:04d}",
                agent_name=f"{arng.choice(_FIRST)} {arng.choice(_LAST)}",
                team=f"Team {TEAMS[seat % len(TEAMS)]}",
                hire_date=hired,
                leave_date=left,
                compliance=round(_clamp(arng.betavariate(4.0, 1.4), 0.15, 0.99), 4),
                empathy=round(arng.uniform(0.15, 0.95), 4),
                stress_base=round(arng.uniform(0.05, 0.45), 4),
                receptivity=round(arng.uniform(0.1, 0.95), 4),
                stress_walk=tuple(walk),
                leave_drift=0.0 if sudden else round(arng.uniform(0.7, 1.0), 4),
            )
        )
    return tuple(agents)


def traits_at(agent: Agent, day: date) -> Traits:
    """Effective traits: monthly stress drift; in the ~4 months before leaving, decline.

    The decline ramps from 0 (``LEAVE_RAMP_DAYS`` before the leave date) to the agent's
    ``leave_drift`` on the last day: more stress (frustration), less discipline, empathy and
    openness to coaching.
    """
    ramp = 0.0
    if agent.leave_date is not None:
        days_left = (agent.leave_date - day).days
        if 0 <= days_left <= LEAVE_RAMP_DAYS:
            ramp = agent.leave_drift * (LEAVE_RAMP_DAYS - days_left) / LEAVE_RAMP_DAYS
    m = min(max(_month_index(day) - _month_index(agent.hire_date), 0), len(agent.stress_walk) - 1)
    return Traits(
        compliance=agent.compliance * (1 - 0.35 * ramp),
        empathy=agent.empathy * (1 - 0.45 * ramp),
        stress=_clamp(agent.stress_base + agent.stress_walk[m] + 0.9 * ramp),
        receptivity=agent.receptivity * (1 - 0.4 * ramp),
        leaving_ramp=ramp,
    )


def _fmt_start(start: datetime, rng: random.Random) -> str:
    h, m = OFFSETS[rng.randrange(len(OFFSETS))]
    if (h, m) == (0, 0) and rng.random() < 0.5:
        return start.strftime("%Y-%m-%dT%H:%M:%SZ")
    sign = 1 if h >= 0 else -1
    tz = timezone(sign * timedelta(hours=abs(h), minutes=m))
    return start.astimezone(tz).isoformat(timespec="seconds")


class Generator:
    """Seeded source of roster, daily listings and transcripts (all cached, all pure)."""

    def __init__(self, seed: int = DEFAULT_SEED, per_day: int = 200) -> None:
        self.seed = seed
        self.per_day = per_day
        self.roster: tuple[Agent, ...] = build_roster(seed)
        self._by_id = {a.agent_id: a for a in self.roster}
        self._day_cache = lru_cache(maxsize=64)(self._day)

    # -- roster -------------------------------------------------------------------------------
    def agent(self, agent_id: str) -> Agent:
        return self._by_id[agent_id]

    def latent_traits(self) -> dict[str, dict[str, float]]:
        """Base latent traits per agent id (what the signal tests try to recover)."""
        return {
            a.agent_id: {
                "compliance": a.compliance,
                "empathy": a.empathy,
                "stress_base": a.stress_base,
                "receptivity": a.receptivity,
            }
            for a in self.roster
        }

    def hr_roster(self, as_of: date | None = None) -> list[tuple[str, str, str, date, date | None]]:
        """The roster as HR knows it on ``as_of`` (default: today, UTC).

        HR lists whoever has been hired by then, with a leave date only once it has happened:
        future leaves (which the generator already knows) are not in the file.
        """
        as_of = as_of or datetime.now(UTC).date()
        return [
            (
                a.agent_id,
                a.agent_name,
                a.team,
                a.hire_date,
                a.leave_date if a.leave_date is not None and a.leave_date <= as_of else None,
            )
            for a in self.roster
            if a.hire_date <= as_of
        ]

    def write_roster_csv(self, path: str | Path, as_of: date | None = None) -> Path:
        """The HR export as of ``as_of`` (default today, UTC): agent_id, agent_name, team,
        hire_date, leave_date (empty while the agent is employed)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["agent_id", "agent_name", "team", "hire_date", "leave_date"])
            for agent_id, name, team, hire, leave in self.hr_roster(as_of):
                w.writerow(
                    [agent_id, name, team, hire.isoformat(), leave.isoformat() if leave else ""]
                )
        return p

    # -- one day --------------------------------------------------------------------------------
    def day(
        self, day: date, hostile: bool = False
    ) -> tuple[list[tuple[datetime | None, Any]], dict[str, Spec]]:
        """(records with their UTC start, or None for malformed; specs by id) for one UTC day."""
        return self._day_cache(day, hostile)

    def _day(
        self, day: date, hostile: bool
    ) -> tuple[list[tuple[datetime | None, Any]], dict[str, Spec]]:
        rng = random.Random(_h(self.seed, "day", day.isoformat()))
        working = [a for a in self.roster if a.employed_on(day)]
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        starts = sorted(rng.randrange(86400) for _ in range(self.per_day if working else 0))
        traits = {a.agent_id: traits_at(a, day) for a in working}
        # agents about to leave are absent more often (fewer contacts), a classic early sign
        cum: list[float] = []
        total = 0.0
        for a in working:
            total += 1.0 - 0.6 * traits[a.agent_id].leaving_ramp
            cum.append(total)
        ymd = day.strftime("%Y%m%d")
        rows: list[tuple[datetime | None, Any]] = []
        specs: dict[str, Spec] = {}
        n_hostile = 0  # rotate through every hostile string
        for n, sec in enumerate(starts, start=1):
            iid = f"INT-{ymd}-{n:05d}"
            start = day_start + timedelta(seconds=sec)
            agent = working[min(bisect.bisect_right(cum, rng.random() * total), len(working) - 1)]
            tr = traits[agent.agent_id]
            channel = _weighted(rng, CHANNEL_WEIGHTS)
            campaign = _weighted(rng, CAMPAIGN_WEIGHTS)
            if channel == "email" and campaign != "inbound_care":
                campaign = "inbound_care"
            topics, direction = CAMPAIGNS[campaign]
            topic = topics[rng.randrange(len(topics))]
            p_res = 0.25 + 0.45 * tr.empathy + 0.25 * (1 - tr.stress)
            p_res += CHANNEL_STYLE[channel].resolution
            resolved = rng.random() < p_res
            if channel == "voice":
                n_utt = rng.randint(20, 150)
                duration = float(n_utt * rng.randint(5, 9))
            elif channel == "video":
                n_utt = rng.randint(20, 80)
                duration = float(n_utt * rng.randint(5, 9))
            elif channel == "chat":
                n_utt = rng.randint(8, 30)
                duration = float(n_utt * rng.randint(15, 40))
            else:
                n_utt = rng.randint(2, 6)
                duration = 0.0
            cust_no = rng.randrange(1, 30000)
            mailbox = MAILBOXES[rng.randrange(2)] if channel == "email" else None
            spec = Spec(
                iid,
                channel,
                start,
                duration,
                agent,
                tr,
                campaign,
                topic,
                resolved,
                n_utt,
                mailbox,
                f"customer{cust_no}@mail.example",
            )
            specs[iid] = spec
            if resolved:
                disposition = {
                    "collections": "payment_arranged",
                    "sales": "sale_made",
                    "cancellation": "saved",
                }.get(topic, "resolved")
            else:
                disposition = rng.choice(("follow_up_required", "escalated", "transferred"))
            wraps = list(WRAP_UPS[topic][: 1 + rng.randrange(len(WRAP_UPS[topic]))])
            if not resolved:
                wraps.append("WU-FOLLOWUP")
            shown_channel = channel
            if rng.random() < 0.04:
                shown_channel = channel.capitalize() if rng.random() < 0.7 else channel.upper()
            rec: dict[str, Any] = {
                "id": iid,
                "channel": shown_channel,
                "startTime": _fmt_start(start, rng),
                "duration": None if channel == "email" else duration,
                "agentId": agent.agent_id,
                "agentName": agent.agent_name,
                "direction": direction,
                "customerId": f"CUST-{cust_no:06d}",
                "disposition": disposition,
                "wrapUpCodes": wraps,
                "campaign": campaign,
                "queue": QUEUES[topic],
                "contact": {
                    "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                    "locale": rng.choice(("en-GB", "en-US", "en-IE", "fr-CA")),
                },
            }
            if channel == "email":
                rec["mailbox"] = mailbox
                rec["contact"]["email"] = spec.customer_email
                if rng.random() < 0.5:
                    del rec["duration"]
                if rng.random() < 0.2:
                    del rec["agentId"]
            elif channel == "chat" and rng.random() < 0.05:
                del rec["agentId"]
            else:
                rec["contact"]["phone"] = f"+44 7700 9{cust_no:05d}"
            if rng.random() < 0.05:
                rec["x_sentimentHint"] = rng.choice(("neg", "neu", "pos"))
            if rng.random() < 0.03:
                rec["recordingRegion"] = {"dc": "eu-west", "retentionDays": 90}
            if hostile and _u(self.seed, "hostile", iid) < 0.15:
                hr = random.Random(_h(self.seed, "hostile", iid))
                bad = lx.HOSTILE_STRINGS[n_hostile % len(lx.HOSTILE_STRINGS)]
                n_hostile += 1
                field = hr.choice(("agentName", "disposition", "queue", "contact"))
                if field == "contact":
                    rec["contact"]["name"] = bad
                else:
                    rec[field] = bad
                rec["wrapUpCodes"] = [*rec["wrapUpCodes"], bad]
                rec["x_note"] = bad
            rows.append((start, rec))
        if hostile and rows:
            mrng = random.Random(_h(self.seed, "malformed", day.isoformat()))
            for k, bad_rec in enumerate(self._malformed(mrng, day, len(rows))):
                pos = _h(self.seed, day, "malformed", k) % (len(rows) + 1)
                rows.insert(pos, (None, bad_rec))
        return rows, specs

    def _malformed(self, rng: random.Random, day: date, n: int) -> list[Any]:
        """Invalid records a real listing contains: missing id, bad channel/time, non-objects."""
        ymd = day.strftime("%Y%m%d")
        k = max(4, n // 40)
        out: list[Any] = []
        for j in range(k):
            kind = j % 5
            base = {
                "channel": "voice",
                "startTime": f"{day.isoformat()}T12:00:00Z",
                "agentId": "AG-0001",
                "duration": 60,
            }
            if kind == 0:
                out.append(base)
            elif kind == 1:
                out.append({**base, "id": f"INT-{ymd}-9{j:04d}", "channel": "fax"})
            elif kind == 2:
                out.append({**base, "id": f"INT-{ymd}-9{j:04d}", "startTime": "yesterday-ish"})
            elif kind == 3:
                out.append(rng.choice((42, "INT-not-an-object", None, ["nested"])))
            else:
                out.append({**base, "id": f"INT-{ymd}-9{j:04d}", "channel": None})
        return out

    def spec(self, interaction_id: str, hostile: bool = False) -> Spec | None:
        """Look up one interaction by id (its day is in the id)."""
        try:
            ymd = interaction_id.split("-")[1]
            d = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:8]))
        except (IndexError, ValueError):
            return None
        return self.day(d, hostile)[1].get(interaction_id)

    def interactions(self, day: date, hostile: bool = False) -> list[Any]:
        """The listing records of one UTC day, in start order."""
        return [rec for _, rec in self.day(day, hostile)[0]]

    # -- transcripts -----------------------------------------------------------------------------
    def utterances(self, spec: Spec, hostile: bool = False) -> list[tuple[str, str]]:
        """(role, text) pairs; what a trait makes likely is what the kits later find.

        Compliance steps are missed with a chance that grows steeply as discipline falls
        (most agents follow the script; the low-discipline minority causes most failures),
        scaled by the channel (chat and email openers are templated, voice is said live).
        Frustration and customer effort are per-contact events (an agent snaps at a customer
        in some contacts, not on every turn), so their frequency tracks stress directly.
        """
        rng = random.Random(_h(self.seed, "tx", spec.interaction_id))
        tr = spec.traits
        topic = spec.topic
        style = CHANNEL_STYLE[spec.channel]
        out: list[tuple[str, str]] = []
        a = out.append
        c = rng.choice
        written = spec.channel in ("chat", "email")
        slack = style.slip * (1 - tr.compliance) ** 3  # 0 for a perfect agent
        disclose = rng.random() >= 0.008 * style.slip + 1.6 * slack
        early = rng.random() >= 0.3 * style.slip + 1.2 * slack
        disclosure = lx.RECORDING_DISCLOSURE[3] if written else c(lx.RECORDING_DISCLOSURE[:3])
        brand = rng.random() < 0.3 + 0.6 * (1 - tr.stress) + style.brand
        greet = f"Thank you for calling {lx.BRAND}" if brand else "Hello"
        if spec.channel == "email":
            greet = f"Thank you for contacting {lx.BRAND}" if brand else "Hi"
        if rng.random() < 0.4 and spec.channel != "email":
            a(("customer", c(("Hello?", "Hi", "Hello"))))
        opener = f"{greet}, my name is {spec.agent.agent_name.split()[0]}."
        if disclose and early:
            opener += f" Please note {disclosure}."
        a(("agent", opener))
        if spec.campaign == "collections" and rng.random() >= 0.02 + 1.4 * slack:
            a(("agent", f"I must tell you {lx.MINI_MIRANDA[0]}, and {lx.MINI_MIRANDA[1]}."))
        a(("customer", c(lx.CUSTOMER_REASON[topic])))
        if disclose and not early:
            a(("agent", f"Before we go on, {disclosure}."))
        if rng.random() >= 0.008 * style.slip + 1.25 * slack:
            a(("agent", f"{c(lx.CONSENT_REQUEST).capitalize()} discuss your account today?"))
            a(("customer", c(lx.CONSENT_AFFIRM).capitalize() + "."))
        body_start = len(out)
        body_end = max(len(out) + 1, spec.n_utterances - 3)
        p_emp = (0.03 + 0.3 * tr.empathy) * style.empathy
        p_rec = 0.01 + 0.2 * tr.receptivity
        p_def = 0.06 * (1 - tr.receptivity)
        agent_lines = lx.AGENT_FILLER + lx.AGENT_TOPIC_LINES[topic]
        cust_lines = lx.CUSTOMER_FILLER + lx.CUSTOMER_REASON[topic]
        escalate = rng.random() < 0.02 + 0.25 * tr.stress * (0.5 if spec.resolved else 1.5)
        esc_at = rng.randrange(len(out), body_end + 1)
        turn = "agent"
        while len(out) < body_end:
            if turn == "agent":
                r = rng.random()
                text = c(agent_lines)
                if r < p_emp:
                    text = f"{c(lx.EMPATHY).capitalize()}. {text}"
                elif r < p_emp + p_rec:
                    text = f"{c(lx.RECEPTIVE).capitalize()}. {text}"
                elif r < p_emp + p_rec + p_def:
                    text = f"{c(lx.DEFENSIVE).capitalize()}. {text}"
                if tr.stress > 0.6 and rng.random() < 0.03:
                    text += f" {c(lx.BRAND_NEGATIVE).capitalize()}."
                a(("agent", text))
                turn = "customer"
            else:
                text = c(cust_lines)
                if escalate and len(out) >= esc_at:
                    text = f"{c(lx.ESCALATION_REQUEST).capitalize()}."
                    escalate = False
                if hostile and (hk := _h(self.seed, spec.interaction_id, len(out))) % 20 == 0:
                    text += " " + lx.HOSTILE_STRINGS[hk % len(lx.HOSTILE_STRINGS)]
                a(("customer", text))
                turn = "agent"
        if spec.resolved:
            a(("agent", f"{c(lx.RESOLUTION_CONFIRM).capitalize()}. {lx.CLOSINGS_AGENT[0]}"))
            a(("customer", f"{c(lx.RESOLUTION_THANKS).capitalize()}. {lx.CLOSINGS_CUSTOMER[0]}"))
        else:
            a(("agent", f"I'm afraid {c(lx.UNRESOLVED)}. {lx.CLOSINGS_AGENT[0]}"))
            a(("customer", lx.CLOSINGS_CUSTOMER[1]))
        # per-contact events, placed on body turns (or the closing turn of a short contact)
        agent_at = [i for i in range(body_start, len(out)) if out[i][0] == "agent"]
        cust_at = [i for i in range(body_start, len(out)) if out[i][0] == "customer"]
        n_fru = 0
        if rng.random() < 0.03 + 0.6 * tr.stress:
            n_fru = 1 + (rng.random() < tr.stress) + (rng.random() < tr.stress**2)
        for _ in range(n_fru):
            i = c(agent_at)
            out[i] = ("agent", f"{c(lx.FRUSTRATION).capitalize()}. {out[i][1]}")
        n_pro = sum(rng.random() < 0.7 * slack for _ in range(2))
        for _ in range(n_pro):
            i = c(agent_at)
            out[i] = ("agent", f"{out[i][1]} {c(lx.PROHIBITED).capitalize()}.")
        p_eff = style.effort * (0.4 + tr.stress) * (0.7 if spec.resolved else 1.5)
        n_eff = (rng.random() < p_eff) + (rng.random() < p_eff / 3)
        for _ in range(n_eff):
            i = c(cust_at)
            out[i] = ("customer", f"{c(lx.CUSTOMER_EFFORT).capitalize()}. {out[i][1]}")
        if brand and rng.random() < 0.5:
            a(("agent", f"{lx.BRAND_POSITIVE[2].capitalize()}. {lx.CLOSINGS_AGENT[1]}"))
        return out

    def transcript(self, interaction_id: str, hostile: bool = False) -> dict[str, Any] | None:
        """The transcript body in the channel's contract shape, or None for an unknown id."""
        spec = self.spec(interaction_id, hostile)
        if spec is None:
            return None
        return self._transcript(spec, hostile)

    def _transcript(self, spec: Spec, hostile: bool) -> dict[str, Any]:
        utts = self.utterances(spec, hostile)
        rng = random.Random(_h(self.seed, "times", spec.interaction_id))
        body: list[dict[str, Any]] = []
        n = len(utts)
        if spec.channel in ("voice", "video"):
            step = spec.duration / n
            for i, (role, text) in enumerate(utts):
                t0 = round(i * step, 2)
                body.append(
                    {
                        "speakerRole": role,
                        "startTime": t0,
                        "endTime": round(t0 + step * 0.9, 2),
                        "text": text,
                    }
                )
            fmt = "ovts"
        elif spec.channel == "chat":
            step = spec.duration / n
            for i, (role, text) in enumerate(utts):
                ts = spec.start + timedelta(seconds=round(i * step))
                u: dict[str, Any] = {
                    "speakerRole": role,
                    "startTime": ts.isoformat(timespec="seconds").replace("+00:00", "Z"),
                    "text": text,
                }
                if rng.random() > 0.3:
                    t1 = ts + timedelta(seconds=max(1, round(step * 0.5)))
                    u["endTime"] = t1.isoformat(timespec="seconds").replace("+00:00", "Z")
                body.append(u)
            fmt = "plain"
        else:
            mailbox = spec.mailbox or MAILBOXES[0]
            t = spec.start
            for role, text in utts:
                frm, to = (
                    (mailbox, [spec.customer_email])
                    if role == "agent"
                    else (spec.customer_email, [mailbox])
                )
                u = {
                    "from": frm,
                    "to": to,
                    "startTime": t.isoformat(timespec="seconds"),
                    "text": text,
                }
                if rng.random() < 0.15:
                    u["speakerRole"] = None
                body.append(u)
                t += timedelta(minutes=rng.randint(5, 240))
            fmt = "plain"
        return {"interactionId": spec.interaction_id, "format": fmt, "utterances": body}


def transcript_text(payload: dict[str, Any], mailbox: str | None = None) -> str:
    """The Semarize input for a transcript body, as the pipeline builds it (tests use this)."""
    lines: list[str] = []
    for u in payload.get("utterances") or []:
        role = u.get("speakerRole")
        if role not in ("agent", "customer"):
            if "from" in u and mailbox:
                role = "agent" if u.get("from") == mailbox else "customer"
            else:
                role = "unknown"
        text = str(u.get("text") or "").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
        lines.append(f"{role}: {text}")
    return "\n".join(lines)


def write_roster_csv(path: str | Path, seed: int = DEFAULT_SEED, as_of: date | None = None) -> Path:
    """Write the roster of ``seed`` as HR exports it on ``as_of`` (default: today, UTC)."""
    return Generator(seed, per_day=0).write_roster_csv(path, as_of=as_of)
