"""Every phrase the kits look for, in one place.

The sandbox generator writes its utterances from these same tuples, so the
signal the kits recover is real and a phrase changed here changes both sides.
All phrases are lower case; matching is case-insensitive substring search.
"""

from __future__ import annotations

BRAND = "Northwind Telecom"

TOPICS: tuple[str, ...] = (
    "billing",
    "cancellation",
    "technical",
    "collections",
    "sales",
    "account",
    "complaint",
)

# --- qa_compliance -------------------------------------------------------------------------
RECORDING_DISCLOSURE: tuple[str, ...] = (
    "this call may be recorded",
    "this call is being recorded",
    "calls are recorded for quality and training",
    "this conversation may be recorded",
)
CONSENT_REQUEST: tuple[str, ...] = (
    "do you consent to",
    "is it okay if we continue",
    "may i have your permission",
    "do i have your consent",
)
CONSENT_AFFIRM: tuple[str, ...] = (
    "yes, i consent",
    "yes, that's fine",
    "sure, go ahead",
    "yes, you have my permission",
)
CONSENT_DECLINE: tuple[str, ...] = (
    "no, i don't consent",
    "i'd rather not",
)
PROHIBITED: tuple[str, ...] = (
    "you have no choice",
    "we will take legal action today",
    "guaranteed approval",
    "you could be arrested",
    "this is your last chance",
    "i promise there will be no charges",
)
MINI_MIRANDA: tuple[str, ...] = (
    "this is an attempt to collect a debt",
    "any information obtained will be used for that purpose",
)
# Short openers that do not count as the customer's first substantive turn.
CUSTOMER_GREETINGS: tuple[str, ...] = ("hello", "hi", "hi there", "hello?", "yes, hello", "hey")

# --- experience_quality --------------------------------------------------------------------
EMPATHY: tuple[str, ...] = (
    "i understand how frustrating",
    "i'm sorry to hear that",
    "i can see why that would be",
    "thank you for your patience",
    "i really appreciate you explaining",
    "that sounds stressful",
)
RESOLUTION_CONFIRM: tuple[str, ...] = (
    "that's been resolved now",
    "i've fixed that for you",
    "your issue is now resolved",
    "everything is sorted on your account",
)
RESOLUTION_THANKS: tuple[str, ...] = (
    "great, that solves it",
    "perfect, that fixed it",
    "thanks, that's sorted",
)
UNRESOLVED: tuple[str, ...] = (
    "i can't resolve that today",
    "you'll need to call back",
    "that still doesn't fix my problem",
    "so nothing has changed",
)
CUSTOMER_EFFORT: tuple[str, ...] = (
    "i already told you",
    "this is the third time i'm calling",
    "i've been on hold for ages",
    "do i have to repeat everything",
    "i keep getting transferred",
)
BRAND_POSITIVE: tuple[str, ...] = (
    "thank you for calling northwind",
    "thank you for contacting northwind",
    "we value you as a northwind customer",
    "happy to help with that",
)
BRAND_NEGATIVE: tuple[str, ...] = (
    "not my problem",
    "that's just how it is",
    "whatever you say",
)
ESCALATION_REQUEST: tuple[str, ...] = (
    "let me speak to a manager",
    "i want to talk to your supervisor",
    "i want to escalate this",
    "i'd like to file a formal complaint",
)
TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    "billing": ("my bill", "invoice", "charged twice", "a charge on", "refund"),
    "cancellation": ("cancel my", "close my account", "end my contract", "switching provider"),
    "technical": (
        "not working",
        "keeps dropping",
        "error message",
        "restart the router",
        "no signal",
    ),
    "collections": ("overdue balance", "past due", "payment plan", "outstanding amount"),
    "sales": ("upgrade", "new plan", "special offer", "add a line"),
    "account": (
        "update my address",
        "reset my password",
        "change the account holder",
        "account details",
    ),
    "complaint": ("poor service", "unacceptable", "very unhappy", "formal complaint"),
}

# --- agent_wellbeing -----------------------------------------------------------------------
FRUSTRATION: tuple[str, ...] = (
    "as i already said",
    "i've told you already",
    "look, there's nothing i can do",
    "please calm down",
    "i don't have time for this",
    "we've been over this",
)
RECEPTIVE: tuple[str, ...] = (
    "let me double-check that for you",
    "just to make sure i understood",
    "good point, i'll note that",
    "let me summarise what we agreed",
    "i'll follow the new process here",
)
DEFENSIVE: tuple[str, ...] = (
    "that's not how we do it",
    "i know what i'm doing",
    "it's not my fault",
)

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
