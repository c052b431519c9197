"""The typer application every command module registers itself on, and the CLI's error policy.

A failure is one line on stderr, ``error: ...``, never wrapped and never a traceback, and a non-zero
exit: 2 for settings that cannot be used (an unknown ``STREAM_TAGGER_*`` variable, a bad value, a bad
flag value), 1 for anything else. Every command checks the environment before it does anything.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from stream_tagger.kafka.embedded_broker import bind_error
from stream_tagger.settings import Settings, SettingsError


class _OneLineUsageErrors(typer.core.TyperGroup):
    """A command line typer cannot parse (a bad flag value, an unknown command) is one line too: typer
    would draw a box around it, wrapped at 80 columns."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            _print_error("aborted")
            raise SystemExit(1) from None
        except Exception as exc:
            # click's usage errors, without importing typer's private copy of click
            if not hasattr(exc, "format_message") or not hasattr(exc, "exit_code"):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # no command given: the help is the answer
                exc.show()  # type: ignore[attr-defined]
                raise SystemExit(exc.exit_code) from None
            command = getattr(getattr(exc, "ctx", None), "command_path", "stream-tagger")
            _print_error(f"{exc.format_message()} (see `{command} --help`)")
            raise SystemExit(exc.exit_code) from None
        raise SystemExit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="stream-tagger",
    help="Tag content events on Kafka with an ONNX text classifier.",
    cls=_OneLineUsageErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

#: Exit code of settings that cannot be used, as for a bad command line.
USAGE = 2


@contextlib.contextmanager
def needs_train_extra(command: str) -> Iterator[None]:
    """Around the imports of a command that trains or scores labelled data: a worker's install has no
    scikit-learn and friends, and that is one line, not a traceback."""
    try:
        yield
    except ModuleNotFoundError as exc:
        fail(
            f"{command} needs the train extra ({exc.name} is missing): install requirements/dev.lock, "
            "or the package with [train]"
        )


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and exit non-zero: the CLI's only way to report a failure."""
    _print_error(message)
    raise typer.Exit(code)


def os_problem(exc: OSError) -> str:
    """An OS error as "path: reason", one line: ``str()`` would add "[Errno 13]" and quote the path."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: through links when both exist, by resolved path otherwise."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def refuse_overwriting(out: Path, out_flag: str, inputs: Iterable[Path], in_flag: str) -> None:
    """Fail when an output names one of the command's input files: opening it for writing would empty
    the input before it is read."""
    for path in inputs:
        if _same_file(path, out):
            fail(f"{out_flag} {out} is the input file {in_flag} {path}: choose another output file")


def cannot_write(path: Path, exc: OSError) -> NoReturn:
    """Fail in one line naming the output that could not be written and why."""
    fail(f"cannot write {path}: {exc.strerror or exc}")


def check_writable(path: Path, *, make_parents: bool = False) -> None:
    """Fail in one line, before a long run, when its output file cannot be written: after the run the
    work would be lost. Opens it for appending (an existing file is left as it is) and removes it again
    if this created it."""
    existed = path.exists()
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab"):
            pass
    except OSError as exc:
        cannot_write(path, exc)
    if not existed:
        path.unlink(missing_ok=True)


def _print_error(message: str) -> None:
    # The message is plain text: a path or "topic[0]" in it must not be read as rich markup. Soft
    # wrap: rich would otherwise break it at 80 columns when stderr is not a terminal.
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)


def settings_from(ctx: typer.Context | None = None, **flags: Any) -> Settings:
    """Settings from the environment, with the flags the user gave (not None) on top; a problem with
    either is one line naming the variable or the flag (``ctx``: the command's, to find its name),
    and exit 2. Every command calls it first, so every one fails on an unknown or bad variable."""
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**given)
    except SettingsError as exc:
        fail(str(exc.renamed(_flag_names(ctx, given))), code=USAGE)


def check_settings() -> None:
    """For the commands that use no setting: the variable was meant for something, and a run must
    not go on without it."""
    settings_from()


def _flag_names(ctx: typer.Context | None, fields: dict[str, Any]) -> dict[str, str]:
    """The flag each field was given as: the command's option whose parameter is named after it."""
    if ctx is None:
        return {}
    return {
        param.name: param.opts[0]
        for param in ctx.command.params
        if param.name in fields and param.param_type_name == "option"
    }


def check_web_port(settings: Settings) -> None:
    """Fail in one line, before anything starts, when the web port is taken: the web server would
    find out only after the model is loaded and the broker reached, and with a traceback."""
    if settings.web_port == 0:  # any free port
        return
    error = bind_error(settings.web_host, settings.web_port)
    if error is not None:
        fail(
            f"cannot serve /metrics, /healthz and /ready on {settings.web_host}:{settings.web_port} "
            f"({error}); set another with --web-port or STREAM_TAGGER_WEB_PORT"
        )


def configure_logging(settings: Settings) -> None:
    """One log format for the long-running commands (worker, feedback-worker): ``stream_tagger.logs``."""
    from stream_tagger.logs import configure_logging as configure

    configure(settings.log_level, settings.log_format)
