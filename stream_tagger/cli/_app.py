"""The typer application every command module registers itself on, and the CLI's error policy."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from stream_tagger.settings import Settings

app = typer.Typer(
    name="stream-tagger",
    help="Tag content events on Kafka with an ONNX text classifier.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and exit non-zero: the CLI's only way to report a failure."""
    # The message is plain text: a path or "topic[0]" in it must not be read as rich markup.
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False)
    raise typer.Exit(code)


def settings_from(**flags: Any) -> Settings:
    """Settings from the environment, with the flags the user gave (not None) on top."""
    return Settings(**{name: value for name, value in flags.items() if value is not None})


def configure_logging(settings: Settings) -> None:
    """One log format for the long-running commands (worker, feedback-worker)."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
