"""``modelrunner r-helper``: modelrunner's R helper package (``library(modelrunner)``) for R outside
modelrunner; models run by modelrunner get it without this (see execution/r_helper.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelrunner.cli import output

r_helper_app = typer.Typer(
    help="modelrunner's R helper package: params(), inputs(), outputs(), checkpoint(), progress().",
    no_args_is_help=True,
)


@r_helper_app.command("install")
def install(
    library: Annotated[
        Path | None,
        typer.Option(
            "--library",
            envvar="MODELRUNNER_R_LIBRARY",
            help="The R library folder to install into (made if missing); R's first library by default.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Install the R helper from modelrunner's own files with `R CMD INSTALL` (no CRAN; it needs
    R and its jsonlite package), so that `library(modelrunner)` works in R started by hand, e.g.
    to try a model outside modelrunner. Models that modelrunner runs have it already."""
    from modelrunner.execution import r_helper

    folder = library if library is not None else r_helper.default_library()
    r_helper.install(folder.absolute())
    said = f"installed modelrunner's R helper into {folder.absolute()}: library(modelrunner) loads it"
    output.stdout().print(output.cell(said))
