"""`refseq rep add|password|remove|signout|link|list`: who may sign in to the web queue."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from sequencer.adapters.cli import output, web
from sequencer.adapters.cli.common import handle_errors, parse_now, settings, uow
from sequencer.errors import SequencerError
from sequencer.services import accounts
from sequencer.services.accounts import PasswordHasher, RepsUnit, Role

app = typer.Typer(help="Web queue accounts: reps and admins.", no_args_is_help=True)
PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of stdin."
)


def _units() -> Callable[[], RepsUnit]:
    from sequencer.adapters.db.reps import reps_factory

    return reps_factory(uow())


def _hasher() -> PasswordHasher:
    from sequencer.adapters.web.passwords import Argon2Hasher

    return Argon2Hasher()


def _read_password(from_stdin: bool, required: bool) -> str | None:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise SequencerError("--password-stdin: the first line of stdin is empty")
        return line
    if not sys.stdin.isatty():
        if required:
            raise SequencerError("no terminal to ask for the password: use --password-stdin")
        return None
    prompt = "Password" if required else "Password (empty: sign in by link only)"
    password: str = typer.prompt(
        prompt, hide_input=True, confirmation_prompt=True, default="", show_default=False
    )
    if not password and required:
        raise SequencerError("the password is empty")
    return password or None


@app.command("add")
@handle_errors
def add(
    email: str = typer.Argument(..., help="The rep's email: the one in their campaigns' rep:."),
    name: str = typer.Option("", "--name", help="Display name (default: the email)."),
    admin: bool = typer.Option(False, "--admin", help="Sees and acts on every rep's drafts."),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Add a rep (asks for a password when run in a terminal)."""
    password = _read_password(password_stdin, required=False)
    rep = accounts.add_rep(
        _units(),
        email,
        name,
        parse_now(None),
        role=Role.ADMIN if admin else Role.REP,
        password=password,
        hasher=_hasher() if password else None,
    )
    how = "with a password" if password else f"without a password: refseq rep link {rep.email}"
    output.out.print(f"added {rep.role.value} {rep.email} ({how})", markup=False, highlight=False)


@app.command("password")
@handle_errors
def password(email: str, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Set or change a rep's password (signs out their sessions)."""
    secret = _read_password(password_stdin, required=True)
    assert secret is not None
    rep = accounts.set_password(_units(), email, secret, _hasher())
    output.out.print(f"password set for {rep.email}", markup=False, highlight=False)


@app.command("remove")
@handle_errors
def remove(email: str) -> None:
    """Remove a rep: their web sessions and unused sign-in links stop working at once."""
    rep = accounts.remove_rep(_units(), email)
    output.out.print(f"removed {rep.role.value} {rep.email}", markup=False, highlight=False)


@app.command("signout")
@handle_errors
def signout(email: str) -> None:
    """Sign a rep out of every browser (e.g. a lost laptop), keeping the account."""
    rep = accounts.revoke_sessions(_units(), email)
    output.out.print(f"signed {rep.email} out everywhere", markup=False, highlight=False)


@app.command("link")
@handle_errors
def link(email: str) -> None:
    """Print a one-time sign-in URL (valid 30 minutes) under REFSEQ_BASE_URL."""
    url, expires = accounts.make_login_link(_units(), email, settings().base_url, parse_now(None))
    output.out.print(url, markup=False, highlight=False, soft_wrap=True)
    output.problem(f"one use, valid until {expires:%Y-%m-%d %H:%M} UTC")


@app.command("list")
@handle_errors
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON.")) -> None:
    """Everyone who may sign in."""
    reps = accounts.list_reps(_units())
    if as_json:
        output.emit_json(
            [
                {
                    "email": r.email,
                    "name": r.name,
                    "role": r.role.value,
                    "password": r.password_hash is not None,
                    "created_at": r.created_at.isoformat(),
                }
                for r in reps
            ]
        )
        return
    output.table(
        f"Reps ({len(reps)})",
        ("email", "name", "role", "password", "created (UTC)"),
        (
            (
                r.email,
                r.name,
                r.role.value,
                "yes" if r.password_hash else "no",
                f"{r.created_at:%Y-%m-%d %H:%M}",
            )
            for r in reps
        ),
    )


def register(root: typer.Typer) -> None:
    """`refseq rep …` and `refseq web`."""
    root.add_typer(app, name="rep")
    root.command("web")(web.web)
