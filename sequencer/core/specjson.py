"""CampaignSpec ⇄ JSON, so a launched campaign can be stored and read back by the workers."""

from __future__ import annotations

import hashlib
import json
from datetime import date, time
from pathlib import Path
from typing import Any

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


def _server(s: ServerSpec | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "host": s.host,
        "port": s.port,
        "security": s.security.value,
        "username": s.username,
        "password_env": s.password_env,
    }


def _server_back(d: dict[str, Any] | None) -> ServerSpec | None:
    if d is None:
        return None
    return ServerSpec(
        d["host"], d["port"], Security(d["security"]), d["username"], d["password_env"]
    )


def _dkim_back(d: dict[str, Any] | None) -> DkimSpec | None:
    return None if d is None else DkimSpec(d["selector"], d["domain"], Path(d["key_file"]))


def _step(s: StepSpec) -> dict[str, Any]:
    after = None if s.after is None else {"amount": s.after.amount, "unit": s.after.unit.value}
    return {
        "template": s.template,
        "after": after,
        "thread": s.thread,
        "approval": s.approval.value,
    }


def _step_back(d: dict[str, Any]) -> StepSpec:
    a = d["after"]
    after = None if a is None else Delay(a["amount"], DelayUnit(a["unit"]))
    return StepSpec(d["template"], after, d["thread"], Approval(d["approval"]))


def spec_to_json(spec: CampaignSpec) -> dict[str, Any]:
    w = spec.schedule.window
    out: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "source": str(spec.source),
        "rep": {"name": spec.rep.name, "email": spec.rep.email, "timezone": spec.rep.timezone},
        "mailbox": {
            "smtp": _server(spec.mailbox.smtp),
            "imap": _server(spec.mailbox.imap),
            "imap_folder": spec.mailbox.imap_folder,
            "daily_cap": spec.mailbox.daily_cap,
            "min_gap_seconds": spec.mailbox.min_gap_seconds,
            "dkim": None
            if spec.mailbox.dkim is None
            else {
                "selector": spec.mailbox.dkim.selector,
                "domain": spec.mailbox.dkim.domain,
                "key_file": str(spec.mailbox.dkim.key_file),
            },
        },
        "data": {
            "prospects": str(spec.data.prospects),
            "referrers": str(spec.data.referrers),
            "referrals": str(spec.data.referrals),
        },
        "temperature": {
            "min_our_strength": spec.temperature.min_our_strength,
            "min_their_strength": spec.temperature.min_their_strength,
            "min_nps": spec.temperature.min_nps,
            "name_referrer": spec.temperature.name_referrer.value,
        },
        "schedule": {
            "timezone": spec.schedule.timezone,
            "window": {
                "days": list(w.days),
                "start": w.start.strftime("%H:%M"),
                "end": w.end.strftime("%H:%M"),
            },
            "holidays": [d.isoformat() for d in spec.schedule.holidays],
        },
        "sequences": {k: [_step(s) for s in v] for k, v in spec.sequences.items()},
        "postal_address": spec.postal_address,
        "routing": {
            "notify_rep": spec.routing.notify_rep,
            "webhook_url_env": spec.routing.webhook_url_env,
            "thank_referrer": spec.routing.thank_referrer,
            "thank_window_seconds": spec.routing.thank_window_seconds,
            # Only when set: campaigns without a webhook keep their fingerprint.
            **(
                {"webhook_secret_env": spec.routing.webhook_secret_env}
                if spec.routing.webhook_secret_env
                else {}
            ),
        },
        "templates_dir": None if spec.templates_dir is None else str(spec.templates_dir),
    }
    if spec.mailbox.imap_sent_folder is not None:  # only when set: older hashes stay the same
        out["mailbox"]["imap_sent_folder"] = spec.mailbox.imap_sent_folder
    return out


def spec_from_json(d: dict[str, Any]) -> CampaignSpec:
    mb, t, sc, ro = d["mailbox"], d["temperature"], d["schedule"], d["routing"]
    smtp = _server_back(mb["smtp"])
    assert smtp is not None
    window = sc["window"]
    return CampaignSpec(
        name=d["name"],
        description=d.get("description", ""),
        source=Path(d["source"]),
        rep=RepSpec(**d["rep"]),
        mailbox=MailboxSpec(
            smtp,
            _server_back(mb["imap"]),
            mb["imap_folder"],
            mb["daily_cap"],
            mb["min_gap_seconds"],
            _dkim_back(mb.get("dkim")),
            mb.get("imap_sent_folder"),
        ),
        data=DataFiles(*(Path(d["data"][k]) for k in ("prospects", "referrers", "referrals"))),
        temperature=TemperatureRule(
            t["min_our_strength"],
            t["min_their_strength"],
            t["min_nps"],
            NamePolicy(t["name_referrer"]),
        ),
        schedule=ScheduleSpec(
            sc["timezone"],
            SendWindow(
                tuple(window["days"]),
                time.fromisoformat(window["start"]),
                time.fromisoformat(window["end"]),
            ),
            tuple(date.fromisoformat(x) for x in sc["holidays"]),
        ),
        sequences={k: tuple(_step_back(s) for s in v) for k, v in d["sequences"].items()},
        postal_address=d["postal_address"],
        routing=RoutingSpec(
            ro["notify_rep"],
            ro["webhook_url_env"],
            ro["thank_referrer"],
            ro.get("thank_window_seconds", 86_400),  # stored before it existed: a day
            ro.get("webhook_secret_env"),
        ),
        templates_dir=None if d["templates_dir"] is None else Path(d["templates_dir"]),
    )


def spec_hash(spec_json: dict[str, Any], data_digests: list[str]) -> str:
    """A fingerprint of the campaign file and its data, to tell "unchanged" from "updated"."""
    h = hashlib.sha256(json.dumps(spec_json, sort_keys=True).encode())
    for digest in data_digests:
        h.update(digest.encode())
    return h.hexdigest()
