"""``stream-tagger`` command line: thin typer commands over library functions.

Each module registers its commands on the shared app; importing them here is what makes them exist.
"""

from stream_tagger.cli import config, feedback, model, tools, worker  # noqa: F401  (registers commands)
from stream_tagger.cli._app import app


def main() -> None:
    app()
