"""Revision 0012 turns the old ``step_index`` 1000 notes into ``kind`` note, with their mention."""

from __future__ import annotations

from sqlalchemy import MetaData, Table, select, update

from sequencer.adapters.db import migrate
from sequencer.adapters.db.session import make_engine, make_uow_factory
from sequencer.core.states import DraftKind
from tests.adapters.test_migrations import NOW, add_campaign, add_draft


def test_0012_turns_step_1000_notes_into_notes_and_back(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "0009")
    add_campaign(empty_db_url, "c")
    add_draft(empty_db_url, "c")  # p@x.com: step 0
    engine = make_engine(empty_db_url)
    try:
        drafts = Table("drafts", MetaData(), autoload_with=engine)
        with engine.begin() as connection:  # a note as 0009 stored it: a copy of the step at 1000
            row = connection.execute(select(drafts)).mappings().one()
            values = {k: v for k, v in row.items() if k != "id"}
            values.update(step_index=1000, to_email="James@Pixel.example", message_id="<2@x>")
            connection.execute(drafts.insert().values(values))
    finally:
        engine.dispose()

    migrate.upgrade(empty_db_url)
    factory = make_uow_factory(empty_db_url)
    try:
        with factory() as uow:
            (e,) = uow.repo.list_enrollments(uow.repo.list_campaigns()[0].campaign.id)
            step, note = sorted(uow.repo.drafts_of(e.id), key=lambda d: d.message_id)
            assert (step.kind, step.step_index) == (DraftKind.STEP, 0)
            assert (note.kind, note.step_index) == (DraftKind.NOTE, -1)
            assert uow.repo.note_for(e.id) == note.id
            assert uow.repo.note_mentions(note.id) == [e.id]
            assert uow.repo.open_note_to(e.campaign_id, "james@pixel.example") == note
            assert uow.repo.note_for(e.id + 1) is None
            uow.repo.update_draft(note.id, note.revision, NOW, state="sent", sent_at=NOW)
            uow.commit()
        with factory() as uow:
            assert uow.repo.last_note_to("james@pixel.example") == NOW
            assert uow.repo.last_note_to("james@pixel.example", exclude_draft=note.id) is None
            assert uow.repo.open_note_to(e.campaign_id, "james@pixel.example") is None
    finally:
        factory.dispose()

    migrate.downgrade(empty_db_url, "0009")
    engine = make_engine(empty_db_url)
    try:
        drafts = Table("drafts", MetaData(), autoload_with=engine)
        with engine.begin() as connection:
            steps = sorted(connection.execute(select(drafts.c.step_index)).scalars())
            connection.execute(update(drafts).values(subject="still here"))
    finally:
        engine.dispose()
    assert steps == [0, 1000]
