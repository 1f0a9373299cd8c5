"""What the sandbox generator says: the packaged kits' phrases, and the text around them.

The generator writes its utterances from the packaged kit files (``kits/defaults/*.yaml``),
read here once, so the signal the kits recover is real and a phrase changed in a kit file
changes both sides. A team's own ``KITS_DIR`` changes what is scored, not what the sandbox
customers and agents say (that is how a new prohibited phrase finds old calls that used it).
"""

from __future__ import annotations

from callminer_assets.kits.loader import packaged_kits

BRAND = "Northwind Telecom"

_KITS = packaged_kits()
_QA = {r.brick: r for r in _KITS["qa_compliance"].rules}
_EQ = _KITS["experience_quality"]
_AW = _KITS["agent_wellbeing"]


def _qa(brick: str) -> tuple[str, ...]:
    match = _QA[brick].match
    assert match is not None
    return match.phrases


def _qa_response(brick: str) -> tuple[str, ...]:
    response = _QA[brick].response
    assert response is not None
    return response.phrases


TOPICS: tuple[str, ...] = tuple(_EQ.topics)
RECORDING_DISCLOSURE = _qa("recording_disclosure")
CONSENT_REQUEST = _qa("consent_obtained")
CONSENT_AFFIRM = _qa_response("consent_obtained")
PROHIBITED = _qa("prohibited_phrases")
MINI_MIRANDA = _qa("mini_miranda_given")
EMPATHY = _EQ.phrases["empathy"].phrases
RESOLUTION_CONFIRM = _EQ.phrases["resolution_confirm"].phrases
RESOLUTION_THANKS = _EQ.phrases["resolution_thanks"].phrases
UNRESOLVED = _EQ.phrases["unresolved"].phrases
CUSTOMER_EFFORT = _EQ.phrases["customer_effort"].phrases
BRAND_POSITIVE = _EQ.phrases["brand_positive"].phrases
BRAND_NEGATIVE = _EQ.phrases["brand_negative"].phrases
ESCALATION_REQUEST = _EQ.phrases["escalation_request"].phrases
FRUSTRATION = _AW.phrases["frustration"].phrases
RECEPTIVE = _AW.phrases["receptive"].phrases
DEFENSIVE = _AW.phrases["defensive"].phrases

# --- neutral filler the generator uses (must not contain any phrase above) ------------------
AGENT_FILLER: tuple[str, ...] = (
    "Can I take your account number please?",
    "Thanks, I have your details on screen.",
    "Let me pull that up.",
    "One moment while I check the system.",
    "I can see the last payment on the fifth.",
    "Could you confirm the postcode on the account?",
    "I'm looking at the notes from last month.",
    "Okay, I'm updating that now.",
    "The system shows two devices on the plan.",
    "That will take effect from the next cycle.",
    "I'll send a confirmation to your email.",
    "Right, bear with me a second.",
)
CUSTOMER_FILLER: tuple[str, ...] = (
    "Sure, it's on the letter you sent.",
    "Okay.",
    "Yes, that's right.",
    "It started last week.",
    "I think it was the fifth, yes.",
    "Can you tell me what happens next?",
    "Alright, thanks.",
    "No, just the one address.",
    "Hmm, I'm not sure.",
    "I have it here somewhere.",
)
CUSTOMER_REASON: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice on my bill this month.",
        "There's a charge on my invoice I don't recognise.",
        "I'd like a refund for last month.",
    ),
    "cancellation": (
        "I want to cancel my contract.",
        "I'm switching provider so please close my account.",
        "How do I end my contract early?",
    ),
    "technical": (
        "My internet is not working since yesterday.",
        "The connection keeps dropping every evening.",
        "I get an error message when I log in.",
    ),
    "collections": (
        "I got a letter about an overdue balance.",
        "I know the account is past due.",
        "Can we set up a payment plan for the outstanding amount?",
    ),
    "sales": (
        "I'd like to upgrade my phone.",
        "Is there a new plan with more data?",
        "I saw a special offer online.",
    ),
    "account": (
        "I need to update my address.",
        "Can you reset my password?",
        "I want to change the account holder.",
    ),
    "complaint": (
        "The service has been unacceptable.",
        "I'm very unhappy with how I was treated.",
        "I've had poor service for weeks.",
    ),
}
AGENT_TOPIC_LINES: dict[str, tuple[str, ...]] = {
    "billing": ("I can see the duplicate invoice here.", "I'll raise a refund for that charge."),
    "cancellation": ("Before I cancel, may I ask why you're switching provider?",),
    "technical": ("Please restart the router and tell me what the lights show.",),
    "collections": ("The outstanding amount is 240 pounds.", "We can offer a payment plan."),
    "sales": ("The new plan includes unlimited data.", "I can add a line today."),
    "account": ("I've sent a link to reset your password.", "Let me check the account details."),
    "complaint": ("I'll log this as a formal complaint.",),
}
CLOSINGS_AGENT: tuple[str, ...] = ("Is there anything else I can help with?", "Have a good day.")
CLOSINGS_CUSTOMER: tuple[str, ...] = ("No, that's everything.", "Bye.")

# Data faults under faults=hostile: strings that break naive SQL, CSV, terminals and parsers.
HOSTILE_STRINGS: tuple[str, ...] = (
    "Robert'); DROP TABLE interactions;--",
    '" OR 1=1 --',
    'O\'Brien "the boss" `x`',
    "emoji 😡🔥📞",
    "RTL \u202eoverride\u202c مرحبا بكم",
    "CJK 你好，我的账单有问题",
    "nul\x00byte",
    "multi\nline\r\ntext",
    "tab\tseparated\tvalue",
    "; DELETE FROM semarize_evaluations; /*",
    "%s %d {0} ${jndi:ldap://x}",
    "\\N \\0 NULL",
)
