"""The typer application every command module registers itself on, and the CLI's error policy."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

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
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
