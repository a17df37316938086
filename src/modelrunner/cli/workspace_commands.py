"""``modelrunner init`` and ``modelrunner check``: create a workspace, and find what is wrong in one."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from modelrunner.cli import options, output


class Template(StrEnum):
    python = "python"
    notebook = "notebook"
    r = "r"
    image = "image"


# What a template's model needs before it can run, said after the workspace is created.
_FIRST_STEPS = {
    Template.notebook: "pip install 'modelrunner[notebook]'   # papermill and nbconvert run the notebook",
    Template.r: "apt-get install r-base-core r-cran-jsonlite   # or R and jsonlite from anywhere",
    Template.image: "podman build -t localhost/growth:latest {directory}/growth   # or docker build",
}


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create (it must be new or empty).", file_okay=False)],
    template: Annotated[
        Template,
        typer.Option(
            "--template",
            help="The form of the example model `growth`: a Python command, a Jupyter notebook, an R script, "
            "or a container image (with a container backend).",
        ),
    ] = Template.python,
) -> None:
    """Create a new workspace with an example model (`growth`) to start from."""
    from modelrunner.spec.workspace import create_workspace

    files = create_workspace(directory, template.value)
    console = output.stdout()
    console.print(f"created the workspace {directory} (its model growth: {template.value}):", markup=False)
    for relative in files:
        console.print(f"  {directory / relative}", markup=False)
    console.print("\nnext, try:", markup=False)
    first = _FIRST_STEPS.get(template)
    for command in (
        *([first.format(directory=directory)] if first else []),
        f"modelrunner check --workspace {directory}",
        f"modelrunner run growth --local --workspace {directory} -p rate=0.3",
        f"modelrunner serve --workspace {directory}",
        "then, in another terminal, while serve runs:",
        f"export MODELRUNNER_TOKEN=$(modelrunner tokens create --user admin --workspace {directory} --quiet)",
        "modelrunner run growth -p rate=0.3 --wait",
    ):
        console.print(f"  {command}", markup=False)


def check(workspace: options.Workspace = Path(".")) -> None:
    """Check a workspace: every model.yaml, the workspace file, and that each model's program exists.

    Prints each problem as `file: field: message` and exits 1 if there is any; otherwise lists
    the models with their versions.
    """
    from modelrunner.spec.workspace import Workspace

    found = Workspace(workspace)
    problems = found.problems()
    models = found.models()
    console = output.stdout()
    if problems:
        for problem in problems:
            console.print(str(problem), markup=False, soft_wrap=True)
        count = len(problems)
        output.error(f"{count} problem{'s' if count != 1 else ''} in the workspace {found.root}")
        raise typer.Exit(1)
    table = output.table("model", "version", "title", title=f"workspace {found.root}: no problems")
    for model in models:
        table.add_row(output.cell(model.name), model.version, output.cell(model.spec.title))
    console.print(table)
    if not models:
        output.hint("no models yet: a model is a folder with a model.yaml")
