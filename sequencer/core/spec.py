"""Read and validate a campaign YAML file into a ``CampaignSpec``.

Every problem in the file is collected (with file:line:col and the dotted YAML path) rather
than stopping at the first one. Unknown keys are errors: a typo in a campaign must not be
silently ignored.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import time
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from sequencer.core.model import (
    Approval,
    CampaignSpec,
    DataFiles,
    Delay,
    DelayUnit,
    DkimSpec,
    MailboxSpec,
    NamePolicy,
    RepSpec,
    RoutingSpec,
    ScheduleSpec,
    Security,
    SendWindow,
    ServerSpec,
    StepSpec,
    TemperatureRule,
)
from sequencer.core.yamlnodes import (
    Conv,
    Field,
    MapNode,
    Pos,
    Report,
    any_text,
    boolean,
    choice,
    duration,
    hhmm,
    ints,
    is_collection,
    is_mapping,
    iso_date,
    key_pos,
    load_yaml,
    node_pos,
    show,
    text,
    timezone,
    walk_keys,
)
from sequencer.errors import Problem

Result = tuple[CampaignSpec | None, list[Problem], list[Problem]]

TOP_KEYS = (
    "campaign",
    "description",
    "rep",
    "mailbox",
    "data",
    "templates",
    "temperature",
    "schedule",
    "sequences",
    "compliance",
    "routing",
)
REQUIRED_TOP = ("campaign", "rep", "mailbox", "data", "sequences", "compliance")
SERVER_KEYS = ("host", "port", "security", "username", "password_env")
SEQUENCE_KEYS = ("warm", "cold", "unnamed")
STEP_KEYS = ("template", "after", "thread", "approval")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Inline secrets, and the ``*_env`` key that should name them instead.
SECRET_KEYS = {
    "password": "password_env",
    "pass": "password_env",
    "secret": "password_env",
    "token": "password_env",
    "api_key": "password_env",
    "webhook_url": "webhook_url_env",
}

_SLUG = re.compile(r"[a-z0-9_-]{1,64}")
_TEMPLATE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_DELAY = re.compile(r"(\d+)\s+(business\s+days?|days?|hours?)", re.IGNORECASE)
_ZONE_HINT = "use an IANA name such as America/New_York"


#: A campaign file is a few kB; anything near this is not one (and is not read any further).
MAX_FILE_BYTES = 1 << 20
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def load_campaign(path: Path) -> Result:
    """Read the campaign file at ``path`` and validate it (see ``parse_campaign``)."""
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        return None, [Problem(str(path), "campaign file not found")], []
    except IsADirectoryError:
        return None, [Problem(str(path), "is a folder, expected a campaign YAML file")], []
    except OSError as exc:
        return None, [Problem(str(path), f"cannot read the file: {exc.strerror or exc}")], []
    if len(raw) > MAX_FILE_BYTES:
        message = f"the file is {max(size, len(raw)):,} bytes; a campaign file is at most "
        hint = "is this the right file?"
        return None, [Problem(str(path), f"{message}{MAX_FILE_BYTES:,} bytes", hint=hint)], []
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [_not_utf8(str(path), raw, exc)], []
    return parse_campaign(content, path)


def _not_utf8(source: str, raw: bytes, exc: UnicodeDecodeError) -> Problem:
    hint = "save the file as UTF-8"
    if raw.startswith(_UTF16_BOMS):
        return Problem(source, "not UTF-8 text: the file is UTF-16", line=1, col=1, hint=hint)
    line = raw.count(b"\n", 0, exc.start) + 1
    col = len(raw[raw.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace")) + 1
    message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}: {exc.reason})"
    return Problem(source, message, line=line, col=col, hint=hint)


def parse_campaign(text: str, source: Path) -> Result:
    """Validate campaign YAML ``text`` read from ``source`` (used for messages and relative paths).

    Returns ``(spec, errors, warnings)``; ``spec`` is ``None`` if there is any error. Never
    raises for bad input.
    """
    report = Report(str(source))
    ok, data = load_yaml(text, report)
    if ok:
        if data is None:
            report.error(
                "", Pos(1, 1), "the campaign file is empty", "it needs " + ", ".join(REQUIRED_TOP)
            )
        elif not is_mapping(data):
            report.error(
                "",
                node_pos(data) if is_collection(data) else Pos(1, 1),
                f"expected a mapping of campaign settings at the top level, got {show(data)}",
                "write one setting per line, e.g. campaign: q4-fintech-intros",
            )
        else:
            _check_secrets(data, report)
            spec = _campaign(MapNode(data, "", node_pos(data), report), Path(source))
            if not report.errors:
                return spec, [], _sorted(report.warnings)
    return None, _sorted(report.errors), _sorted(report.warnings)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.col or 0))


def _check_secrets(data: object, report: Report) -> None:
    for mapping, key, path in walk_keys(data):
        if isinstance(key, str) and key.lower() in SECRET_KEYS:
            env_key = SECRET_KEYS[key.lower()]
            report.error(
                path,
                key_pos(mapping, key),
                "secrets never go in the campaign file",
                f"put it in an environment variable and name it with {env_key}",
            )


def _campaign(root: MapNode, source: Path) -> CampaignSpec:
    root.check_keys(TOP_KEYS, skip=SECRET_KEYS)
    base = Path(os.path.realpath(source.parent))
    spec = CampaignSpec(  # fields read in file order, so problems come out in that order
        name=root.get("campaign", _slug, "", required=True),
        source=source,
        description=root.get("description", any_text, ""),
        rep=_rep(root.child("rep", required=True)),
        mailbox=_mailbox(root.child("mailbox", required=True), base),
        data=_data(root.child("data", required=True), base),
        templates_dir=root.opt("templates", _existing(base, folder=True)),
        temperature=_temperature(root.child("temperature")),
        schedule=_schedule(root.child("schedule")),
        sequences=_sequences(root.child("sequences", required=True)),
        postal_address=_compliance(root.child("compliance", required=True)),
        routing=_routing(root.child("routing")),
    )
    if "unnamed" in spec.sequences and spec.temperature.name_referrer is NamePolicy.ALWAYS:
        root.report.warn(
            "sequences.unnamed",
            root.child("sequences").key_pos("unnamed"),
            "sequence 'unnamed' is never used because temperature.name_referrer is 'always'",
        )
    return spec


def _rep(m: MapNode) -> RepSpec:
    m.check_keys(("name", "email", "timezone"), skip=SECRET_KEYS)
    return RepSpec(
        name=m.get("name", text, "", required=True),
        email=m.get("email", _email, "", required=True),
        timezone=m.get("timezone", timezone, "UTC", required=True),
    )


def _dkim(m: MapNode, base: Path) -> DkimSpec:
    m.check_keys(("selector", "domain", "key_file"), skip=SECRET_KEYS)
    return DkimSpec(
        selector=m.get("selector", text, "", required=True),
        domain=m.get("domain", text, "", required=True),
        key_file=m.get("key_file", _existing(base, folder=False), Path(), required=True),
    )


def _mailbox(m: MapNode, base: Path) -> MailboxSpec:
    m.check_keys(("smtp", "imap", "daily_cap", "min_gap", "dkim"), skip=SECRET_KEYS)
    imap = m.child("imap")
    return MailboxSpec(
        dkim=_dkim(m.child("dkim"), base) if m.has("dkim") else None,
        smtp=_server(m.child("smtp", required=True), ()),
        imap=_server(imap, ("folder", "sent_folder")) if m.has("imap") else None,
        imap_folder=imap.get("folder", text, "INBOX"),
        imap_sent_folder=imap.opt("sent_folder", text),
        daily_cap=m.get("daily_cap", ints(1, 10_000), 200),
        min_gap_seconds=m.get("min_gap", duration(0, 86_400), 60),
    )


def _server(m: MapNode, extra_keys: tuple[str, ...]) -> ServerSpec:
    m.check_keys(SERVER_KEYS + extra_keys, skip=SECRET_KEYS)
    server = ServerSpec(
        host=m.get("host", text, "", required=True),
        port=m.get("port", ints(1, 65_535), 1, required=True),
        security=m.get("security", choice(Security), Security.SSL, required=True),
        username=m.get("username", text, "", required=True),
        password_env=m.opt("password_env", _env_name),
    )
    if server.security is Security.NONE and server.password_env and not _is_local(server.host):
        m.report.warn(
            f"{m.path}.security",
            m.value_pos("security"),
            f"the password for {server.host} would be sent unencrypted",
            "use starttls or ssl for servers that are not on this machine",
        )
    return server


def _data(m: MapNode, base: Path) -> DataFiles:
    m.check_keys(("prospects", "referrers", "referrals"), skip=SECRET_KEYS)
    conv = _existing(base, folder=False)
    return DataFiles(
        prospects=m.get("prospects", conv, base, required=True),
        referrers=m.get("referrers", conv, base, required=True),
        referrals=m.get("referrals", conv, base, required=True),
    )


def _temperature(m: MapNode) -> TemperatureRule:
    m.check_keys(("warm_when", "name_referrer"), skip=SECRET_KEYS)
    warm = m.child("warm_when")
    warm.check_keys(("min_our_strength", "min_their_strength", "min_nps"), skip=SECRET_KEYS)
    return TemperatureRule(
        min_our_strength=warm.get("min_our_strength", ints(1, 5), 4),
        min_their_strength=warm.get("min_their_strength", ints(1, 5), 4),
        min_nps=warm.opt("min_nps", ints(0, 10)),
        name_referrer=m.get("name_referrer", choice(NamePolicy), NamePolicy.CONSENTED),
    )


def _schedule(m: MapNode) -> ScheduleSpec:
    m.check_keys(("timezone", "window", "holidays"), skip=SECRET_KEYS)
    holidays = {d for f in m.items("holidays") if (d := iso_date(f)) is not None}
    return ScheduleSpec(
        timezone=m.get("timezone", _schedule_zone, "prospect"),
        window=_window(m.child("window")),
        holidays=tuple(sorted(holidays)),
    )


def _window(m: MapNode) -> SendWindow:
    m.check_keys(("days", "start", "end"), skip=SECRET_KEYS)
    days: list[int] = []
    for f in m.items("days", nonempty=True):
        day = f.value.strip().lower() if isinstance(f.value, str) else ""
        if day not in DAYS:
            f.error(f"expected a day name, got {show(f.value)}", "use " + ", ".join(DAYS))
        elif DAYS.index(day) in days:
            f.error(f"day {day!r} is listed twice")
        else:
            days.append(DAYS.index(day))
    if not m.has("days"):
        days = [0, 1, 2, 3, 4]
    start, end = m.opt("start", hhmm), m.opt("end", hhmm)
    bad = (m.has("start") and start is None) or (m.has("end") and end is None)
    start = time(9) if start is None else start
    end = time(17) if end is None else end
    if start == end and not bad:
        m.report.error(
            f"{m.path}.end",
            m.value_pos("end") if m.has("end") else m.value_pos("start"),
            f"the window must not start and end at the same time ({start:%H:%M})",
            'an end before the start spans midnight, e.g. start: "22:00", end: "06:00"',
        )
    return SendWindow(days=tuple(sorted(days)), start=start, end=end)


def _sequences(m: MapNode) -> dict[str, tuple[StepSpec, ...]]:
    m.check_keys(SEQUENCE_KEYS, skip=SECRET_KEYS)
    result: dict[str, tuple[StepSpec, ...]] = {}
    for key in SEQUENCE_KEYS:
        if key != "unnamed" or m.has(key):
            items = m.items(key, required=key != "unnamed", nonempty=True)
            result[key] = tuple(_step(f, i) for i, f in enumerate(items))
    return result


def _step(f: Field, index: int) -> StepSpec:
    node = MapNode(f.value, f.path, f.pos, f.report)
    if not isinstance(f.value, dict):
        f.error(f"expected a step mapping such as {{template: warm_intro}}, got {show(f.value)}")
        node.quiet = True
    node.check_keys(STEP_KEYS, skip=SECRET_KEYS)
    after = node.opt("after", _delay) if index > 0 else None
    thread = node.get("thread", boolean, False)
    if index == 0 and node.has("after"):
        f.report.error(
            f"{f.path}.after",
            node.value_pos("after"),
            "the first step is sent when the prospect starts the sequence and takes no 'after'",
            "remove 'after' from the first step",
        )
    elif index > 0 and not node.has("after") and not node.quiet:
        node.missing("after", "say how long to wait after the previous step, e.g. 3 business days")
    if index == 0 and thread:
        f.report.error(
            f"{f.path}.thread",
            node.value_pos("thread"),
            "the first step starts the thread and cannot reply in one",
            "use thread: true on follow-up steps only",
        )
    return StepSpec(
        template=node.get("template", _template, "", required=True),
        after=after,
        thread=thread,
        approval=node.get("approval", choice(Approval), Approval.REQUIRED),
    )


def _compliance(m: MapNode) -> str:
    m.check_keys(("postal_address",), skip=SECRET_KEYS)
    return m.get("postal_address", text, "", required=True)


def _routing(m: MapNode) -> RoutingSpec:
    m.check_keys(
        ("notify_rep", "webhook_url_env", "webhook_secret_env", "thank_referrer", "thank_window"),
        skip=SECRET_KEYS,
    )
    url_env = m.opt("webhook_url_env", _env_name)
    secret_env = m.opt("webhook_secret_env", _env_name)
    if m.has("webhook_url_env") and not m.has("webhook_secret_env"):
        m.missing(
            "webhook_secret_env",
            "name the environment variable holding this endpoint's own signing secret "
            "(e.g. CRM_WEBHOOK_SECRET); the receiver verifies X-Refseq-Signature with it",
        )
    return RoutingSpec(
        notify_rep=m.get("notify_rep", boolean, True),
        webhook_url_env=url_env,
        thank_referrer=m.get("thank_referrer", _one_of("draft", "off"), "draft"),
        thank_window_seconds=m.get("thank_window", duration(3600, 30 * 86_400), 86_400),
        webhook_secret_env=secret_env,
    )


# --------------------------------------------------------------------------- converters


def _slug(f: Field) -> str | None:
    v = f.value
    if isinstance(v, str) and _SLUG.fullmatch(v):
        return v
    f.error(
        f"expected a campaign name of lowercase letters, digits, '-' and '_' (at most 64), "
        f"got {show(v)}",
        "e.g. q4-fintech-intros",
    )
    return None


def _email(f: Field) -> str | None:
    value = text(f)
    if value is None:
        return None
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        f.error(f"not a valid email address: {show(value)}", str(exc))
        return None


def _schedule_zone(f: Field) -> str | None:
    if isinstance(f.value, str) and f.value.strip() in ("prospect", "rep"):
        return f.value.strip()
    return timezone(f, "use prospect, rep or an IANA name such as America/New_York")


def _env_name(f: Field) -> str | None:
    if isinstance(f.value, str) and _ENV_NAME.fullmatch(f.value):
        return f.value
    # The value may be the secret itself: never repeat it.
    f.error(
        "expected the name of an environment variable (A-Z, 0-9 and _), such as REP_SMTP_PASSWORD",
        "never put the secret itself here; set it in an environment variable and name that",
    )
    return None


def _template(f: Field) -> str | None:
    v = f.value
    if isinstance(v, str) and _TEMPLATE.fullmatch(v):
        return v
    hint = "templates are referenced by name, e.g. warm_intro"
    if isinstance(v, str) and any(c in v for c in "/\\."):
        f.error(f"expected a template name, not a path: {show(v)}", hint)
    else:
        f.error(f"expected a template name (a-z, 0-9, '-' and '_'), got {show(v)}", hint)
    return None


def _delay(f: Field) -> Delay | None:
    v = f.value
    m = _DELAY.fullmatch(v.strip()) if isinstance(v, str) else None
    if m is None:
        number = isinstance(v, int) and not isinstance(v, bool)
        hint = f'add a unit, e.g. "{v} business days"' if number else ""
        f.error(f"expected a delay such as 3 business days, 2 days or 4 hours, got {show(v)}", hint)
        return None
    amount, unit = int(m[1]), m[2].lower()
    if not 1 <= amount <= 365:
        f.error(f"expected a delay from 1 to 365, got {show(v)}")
        return None
    if unit.startswith("business"):
        return Delay(amount, DelayUnit.BUSINESS_DAYS)
    return Delay(amount, DelayUnit.DAYS if unit.startswith("day") else DelayUnit.HOURS)


def _one_of(*options: str) -> Conv[str]:
    def conv(f: Field) -> str | None:
        if isinstance(f.value, str) and f.value.strip().lower() in options:
            return f.value.strip().lower()
        f.error(f"expected one of {', '.join(options)}, got {show(f.value)}")
        return None

    return conv


def _existing(base: Path, *, folder: bool) -> Conv[Path]:
    """A path relative to ``base`` that must exist as a file (or a folder)."""
    kind = "folder" if folder else "file"

    def conv(f: Field) -> Path | None:
        name = text(f)
        if name is None:
            return None
        try:
            path = Path(os.path.realpath(base / name))
            ok, exists = (path.is_dir() if folder else path.is_file()), path.exists()
        except (OSError, ValueError):  # e.g. a NUL character in the name
            f.error(f"not a usable {kind} name: {show(name)}")
            return None
        if not ok:
            found = f"not a {kind}" if exists else f"{kind} not found"
            f.error(f"{found}: {path}", f"paths are relative to the campaign file's folder {base}")
            return None
        return path

    return conv


def _is_local(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
