"""The typer application every command module registers itself on, and the CLI's error policy."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

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
