"""Command ``config``: the effective settings, as the variables that give them, secrets masked."""

from __future__ import annotations

from typing import Annotated

import typer

from stream_tagger.cli._app import app, settings_from
from stream_tagger.settings import Settings


@app.command(
    help=(
        "Print the settings in force, secrets masked.\n\n"
        "Every STREAM_TAGGER_* variable with its value, one NAME=value line each (empty: unset), from the "
        "environment, the files *_FILE variables name, and the defaults. Secrets print as **********.\n\n"
        "Fails like every command, in one line and exit code 2, on a variable that names no setting or a "
        "bad value.\n\n"
        "Example:  stream-tagger config --changed"
    )
)
def config(
    changed: Annotated[
        bool, typer.Option("--changed", help="Only the settings that differ from their defaults.")
    ] = False,
) -> None:
    effective = settings_from().as_environment()
    defaults = Settings.model_construct().as_environment() if changed else {}
    for name, value in effective.items():
        if not changed or defaults.get(name) != value:
            print(f"{name}={value}")
