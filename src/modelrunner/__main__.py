"""``python -m modelrunner`` is the ``modelrunner`` command."""

from modelrunner.cli.main import app

app(prog_name="modelrunner")
