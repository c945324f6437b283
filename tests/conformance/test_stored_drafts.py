"""A draft stored before the fix (its List-Unsubscribe RFC 2047-encoded in the stored message)
goes out with a List-Unsubscribe an RFC 2369 reader can use: it is built again, not sent."""

from __future__ import annotations

import email.policy
import re
from datetime import datetime
from pathlib import Path

from sequencer.adapters.db.session import SqlUnitOfWorkFactory
from sequencer.core.states import DraftState
from tests.cli_helpers import NOW, Cli, init_example
from tests.conformance import rfc
from tests.smtp_sink import Sink

OLD_POLICY = email.policy.SMTP  # what refseq wrote with before: it encodes long words


def encoded_like_before(message: bytes) -> bytes:
    fields, _, _ = rfc.split(message)
    (field,) = rfc.fields_named(fields, b"list-unsubscribe")
    old = OLD_POLICY.fold("List-Unsubscribe", field.value.decode().strip()).encode()
    assert old.startswith(b"List-Unsubscribe: =?utf-8?q?=3Chttps")  # the defect, reproduced
    stored = message.replace(b"List-Unsubscribe:" + field.raw + b"\r\n", old, 1)
    assert stored != message
    return stored


def test_a_stored_draft_with_an_encoded_list_unsubscribe_is_rebuilt_when_sent(
    db_url: str, tmp_path: Path, smtp_sink: Sink, uow_factory: SqlUnitOfWorkFactory
) -> None:
    cli = Cli(db_url, tmp_path)
    cli.env.update(
        {"REFSEQ_BASE_URL": "https://refseq.acme.example", "REFSEQ_SECRET_KEY": "k" * 32}
    )
    yaml = init_example(cli, tmp_path / "camp")
    yaml.write_text(
        yaml.read_text()
        .replace("port: 2525", f"port: {smtp_sink.port}")
        .replace("min_gap: 90s", "min_gap: 0s")
    )
    cli("launch", str(yaml), "--now", NOW)
    cli("tick", "--now", NOW, "--only", "draft")
    with uow_factory() as uow:
        views = uow.repo.list_drafts([DraftState.PENDING_APPROVAL])
        assert views
        for view in views:
            d = view.draft
            assert d.message is not None
            changed = uow.repo.update_draft(
                d.id,
                d.revision,
                datetime.fromisoformat(NOW),
                message=encoded_like_before(d.message),
            )
            assert changed is not None
        uow.commit()
    cli("approve", "--all", "--campaign", "q4-fintech-intros")
    cli("tick", "--now", NOW)
    received = smtp_sink.handler.received
    assert len(received) == len(views)
    for r in received:
        fields, _, _ = rfc.split(r.data)
        assert rfc.check_one_click(fields) == [], r.data[:1200]
        assert not re.search(rb"=\?", rfc.fields_named(fields, b"list-unsubscribe")[0].raw)
