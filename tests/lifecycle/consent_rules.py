"""The lifecycle machine's consent and flag rules, driven as the people who make them would:
sales ops with `refseq consent grant|revoke` (a whole referrer or one prospect), an admin on
the consent page (signed in, the form's CSRF token), and a person who reviews `refseq flags`
and clears or confirms a flag (by its id or by the referrer's). Each change is appended to the
test's own :class:`~tests.lifecycle.invariants.Model`, which the send-time check asks.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from click.testing import Result
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from typer.testing import CliRunner

from sequencer.adapters.cli.main import app as cli_app
from sequencer.adapters.db.reps import reps_factory
from sequencer.adapters.db.session import SqlUnitOfWorkFactory
from sequencer.adapters.web.passwords import fast_hasher
from sequencer.services import accounts
from sequencer.services.accounts import Role
from tests.lifecycle.invariants import Flag, Model
from tests.lifecycle.world import BASE_URL, REFERRALS, REFERRERS, SECRET, prospect

LATER = st.sampled_from((1, 4, 25, 0))  # hours until the workers' next pass after a rule
OPS = "ops@acme.example"  # sales ops at the CLI, and the admin on the consent page
OPS_PASSWORD = "ops-password-lifecycle"
CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def page_text(body: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def referrer_and_whom(data: st.DataObject, one_prospect: bool) -> tuple[str, str | None]:
    """A referrer and, for a per-prospect change, one of the prospects they know."""
    rid = data.draw(st.sampled_from(sorted(REFERRERS)), label="referrer")
    if not one_prospect:
        return rid, None
    knows = [prospect(i) for i, refs in sorted(REFERRALS.items()) if rid in dict(refs)]
    return rid, data.draw(st.sampled_from(knows), label="prospect")


class ConsentAndFlags(RuleBasedStateMachine):
    """Mixed into the lifecycle machine, which provides what is declared here."""

    db_url: str
    now: datetime
    model: Model
    factory: SqlUnitOfWorkFactory
    actions: Counter[str]

    @property
    def web(self) -> TestClient:
        raise NotImplementedError

    def then(self, hours: int) -> None:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.admin_added = False

    # -- the user's tools --------------------------------------------------------------------
    def refseq(self, *args: str) -> Result:
        """`refseq ARGS` through its entry point, as sales ops (``$REFSEQ_ACTOR``)."""
        env = {"REFSEQ_DATABASE_URL": self.db_url, "REFSEQ_SECRET_KEY": SECRET}
        env |= {"REFSEQ_ACTOR": OPS, "COLUMNS": "200"}
        result = CliRunner().invoke(cli_app, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        return result

    def refseq_json(self, *args: str) -> Any:
        return json.loads(self.refseq(*args, "--json").stdout)

    def admin_on_consent_page(self) -> tuple[TestClient, str]:
        """A browser signed in as the admin, on the consent page; its form's CSRF token."""
        if not self.admin_added:
            units = reps_factory(self.factory)
            accounts.add_rep(
                units, OPS, "Ops Admin", self.now, Role.ADMIN, OPS_PASSWORD, fast_hasher()
            )
            self.admin_added = True
        browser = TestClient(self.web.app, base_url=BASE_URL, follow_redirects=False)
        login = CSRF.search(browser.get("/login").text)
        assert login, "no CSRF token on the sign-in page"
        r = browser.post(
            "/login", data={"email": OPS, "password": OPS_PASSWORD, "csrf": login.group(1)}
        )
        assert r.status_code == 303, r.text
        page = browser.get("/consent")
        assert page.status_code == 200, page.text
        token = CSRF.search(page.text)
        assert token, "no CSRF token on the consent page"
        return browser, token.group(1)

    # -- rules --------------------------------------------------------------------------------
    @rule(data=st.data(), grant=st.booleans(), one_prospect=st.booleans(), later=LATER)
    def ops_changes_consent_cli(
        self, data: st.DataObject, grant: bool, one_prospect: bool, later: int
    ) -> None:
        """`refseq consent grant|revoke REFERRER [--prospect EMAIL]`."""
        rid, whom = referrer_and_whom(data, one_prospect)
        self.now += timedelta(minutes=5)
        args = ["consent", "grant" if grant else "revoke", rid, "--now", self.now.isoformat()]
        out = self.refseq(*args, *(("--prospect", whom) if whom else ())).output
        assert f"referrer {rid}: consent to be named" in out, out
        self.model.ledger.append((rid, whom, grant))
        self.actions[f"consent:cli:{'prospect' if whom else 'referrer'}"] += 1
        self.then(later)

    @rule(data=st.data(), grant=st.booleans(), one_prospect=st.booleans(), later=LATER)
    def admin_changes_consent_web(
        self, data: st.DataObject, grant: bool, one_prospect: bool, later: int
    ) -> None:
        """Grant or Revoke on the consent page, for the referrer or one prospect."""
        rid, whom = referrer_and_whom(data, one_prospect)
        self.now += timedelta(minutes=5)
        browser, csrf = self.admin_on_consent_page()
        verb = "grant" if grant else "revoke"
        form = {"csrf": csrf, "referrer": rid, "prospect": whom or "", "note": "lifecycle"}
        r = browser.post(f"/consent/{verb}", data=form)
        assert (r.status_code, r.headers.get("location")) == (303, "/consent"), r.text
        shown = page_text(browser.get("/consent").text)
        done = "granted" if grant else "revoked"
        said = f"Referrer {rid}: consent to be named{f' to {whom}' if whom else ''} {done}."
        assert said in shown, shown[:2000]
        self.model.ledger.append((rid, whom, grant))
        self.actions[f"consent:web:{'prospect' if whom else 'referrer'}"] += 1
        self.then(later)

    def learn_flags(self, named: set[str], to: str) -> None:
        """After an "I don't know <referrer>" reply: the flag `refseq flags` now lists (its id
        is what a person would clear). The model flags the referrer the prospect denied, or,
        for a message that named nobody, the one refseq flagged."""
        seen = {f.id for f in self.model.flags}
        new = [r for r in self.refseq_json("flags", "--all") if r["id"] not in seen]
        for row in new:
            assert not named or row["referrer"] in named, (named, row)
            self.model.flags.append(Flag(row["referrer"], to, int(row["id"])))
        if not new:  # refseq recorded nothing: the prospect still said it
            self.model.flags += [Flag(rid, to, None) for rid in sorted(named)]

    @precondition(lambda self: bool(self.model.flags))
    @rule(data=st.data(), by_id=st.booleans(), later=LATER)
    def ops_clears_flag(self, data: st.DataObject, by_id: bool, later: int) -> None:
        """The data was right: `refseq flags clear` (the referrer may be named again)."""
        self.resolve_flag(data, False, by_id, later)

    @precondition(lambda self: bool(self.model.flags))
    @rule(data=st.data(), by_id=st.booleans(), later=LATER)
    def ops_confirms_flag(self, data: st.DataObject, by_id: bool, later: int) -> None:
        """The prospect was right: `refseq flags confirm` (the referrer stays unnamed)."""
        self.resolve_flag(data, True, by_id, later)

    def resolve_flag(self, data: st.DataObject, confirm: bool, by_id: bool, later: int) -> None:
        """A person looks at `refseq flags` and clears one (the data is right) or confirms it
        (the prospect is right): by the flag's id, or every flag of the referrer."""
        listed = {int(r["id"]) for r in self.refseq_json("flags")}
        flag = data.draw(st.sampled_from(self.model.flags), label="flag")
        # only blocking flags are listed (open, confirmed); a cleared one keeps its id
        assert flag.id is None or (flag.id in listed) == (flag.state != "cleared"), listed
        state, verb = ("confirmed", "confirm") if confirm else ("cleared", "clear")
        self.now += timedelta(minutes=5)
        if by_id and flag.id is not None:
            target, chosen = str(flag.id), [flag]
        else:
            target = flag.referrer
            chosen = [f for f in self.model.flags if f.referrer == flag.referrer]
        out = self.refseq("flags", verb, target, "--now", self.now.isoformat()).output
        assert f": {state}" in out, out
        for f in chosen:
            f.state = state
        self.actions[f"flags:{verb}"] += 1
        self.actions[f"flags:by_{'id' if target == str(flag.id) else 'referrer'}"] += 1
        self.then(later)
