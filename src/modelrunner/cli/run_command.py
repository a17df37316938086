"""``modelrunner run``: submit a run to the server (and follow it), or run a model here with --local."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelrunner.cli import options
from modelrunner.cli.client import Client
from modelrunner.cli.params_input import combine, read_params_file, split_assignments
from modelrunner.cli.run_view import report_submission, wait_and_report
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.errors import ModelrunnerError
from modelrunner.spec.duration import HINT, parse_duration


def split_pins(values: list[str] | None) -> list[str] | None:
    """Typer callback for ``-i``: each value must be ``input=version``, each input named once."""
    seen: set[str] = set()
    for value in values or []:
        name, sep, version = value.partition("=")
        if not sep or not name.strip() or not version.strip():
            raise typer.BadParameter(f"{value!r} is not input=version (e.g. -i cases=1a2b3c4d)")
        if name.strip() in seen:
            raise typer.BadParameter(f"input '{name.strip()}' is pinned twice")
        seen.add(name.strip())
    return values


def check_max_age(value: str | None) -> str | None:
    """Typer callback for ``--max-age``: seconds or a duration (a usage error otherwise)."""
    if value is not None:
        try:
            parse_duration(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not valid; {HINT}") from None
    return value


def run(
    model: Annotated[str, typer.Argument(help="Name of the model to run.", show_default=False)],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            envvar="MODELRUNNER_PARAM",
            metavar="NAME=VALUE",
            callback=split_assignments,
            help="A parameter; repeat for more. Values are typed by the model's schema (numbers, "
            "booleans, JSON lists) and override --params-file.",
        ),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELRUNNER_PARAMS_FILE",
            exists=True,
            dir_okay=False,
            help="A .json or .yaml file with the parameters as an object.",
        ),
    ] = None,
    cache: Annotated[
        CacheMode,
        typer.Option(
            envvar="MODELRUNNER_CACHE",
            help="use: answer from the cache when the same run succeeded before; refresh: compute again; "
            "only: a cached result or an error.",
        ),
    ] = CacheMode.USE,
    max_age: Annotated[
        str | None,
        typer.Option(
            envvar="MODELRUNNER_MAX_AGE",
            callback=check_max_age,
            metavar="DURATION",
            help="Accept a cached result computed on data no older than this (for a model without inputs: a result "
            "no older than this); seconds or a duration such as 30m, 2d.",
        ),
    ] = None,
    pins: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            envvar="MODELRUNNER_INPUT",
            metavar="NAME=VERSION",
            callback=split_pins,
            help="Run on this version of an input's dataset (a unique prefix of 4+ characters is enough); repeat "
            "for more. Inputs not named use their dataset's newest version.",
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            envvar="MODELRUNNER_BACKEND",
            metavar="NAME",
            help="Run on this backend of the server (`backends:` in modelrunner.yaml). Needs admin on the model, or "
            "a routing rule of one of your groups that sends it there. [default: where routing sends your runs]",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            envvar="MODELRUNNER_WAIT",
            help="Follow the run with a progress bar until it ends; exit 1 unless it succeeded.",
        ),
    ] = False,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            envvar="MODELRUNNER_LOCAL",
            help="Run once here, without a server or cache, from the workspace folder.",
        ),
    ] = False,
    workspace: options.Workspace = Path("."),
    output_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELRUNNER_OUTPUT_DIR",
            file_okay=False,
            help="With --local: where the outputs and the log go. [default: `./modelrunner-outputs/MODEL-UTCTIME`]",
        ),
    ] = None,
) -> None:
    """Run a model with parameters.

    On the server (the default), identical requests are answered from the cache or share one
    execution; the run id comes back at once, or, with `--wait`, when the run ends. With
    `--local` the model runs once on this machine, with a progress bar, and its
    outputs are written to `--output-dir`.

    Example: `modelrunner run growth -p rate=0.3 -p steps=100 -i cases=1a2b3c4d --wait`
    """
    if local:
        if backend is not None:
            raise typer.BadParameter("--local runs here; --backend needs a server", param_hint="--backend")
        if cache != CacheMode.USE or max_age is not None:
            raise typer.BadParameter(
                "--local always computes; --cache and --max-age need a server", param_hint="--cache"
            )
        if pins:
            raise typer.BadParameter(
                "--local does not support dataset inputs yet; run on a server", param_hint="--input"
            )
        _refuse_locally(model, workspace)
        from modelrunner.cli.local_run import run_locally

        code = run_locally(model, param, params_file, workspace, output_dir, json_output)
        raise typer.Exit(code)
    with Client(server) as client:
        submitted = _submit(client, model, param, params_file, cache, max_age, pins, backend)
        if not wait:
            report_submission(submitted, json_output)
            return
        final = wait_and_report(client, submitted, json_output)
    raise typer.Exit(0 if final["status"] == "succeeded" else 1)


def _submit(
    client: Client,
    model: str,
    assignments: list[str] | None,
    params_file: Path | None,
    cache: CacheMode,
    max_age: str | None,
    pins: list[str] | None,
    backend: str | None,
) -> dict[str, Any]:
    # The schema is only needed to type -p values; without them the POST alone names any problem.
    schema = client.model(model)["params"] if assignments else {}
    params = combine(schema, read_params_file(params_file), assignments)
    seconds = parse_duration(max_age) if max_age is not None else None
    inputs = {name.strip(): version.strip() for name, _, version in (pin.partition("=") for pin in pins or [])}
    return client.submit(model, params, cache.value, seconds, inputs, backend)


def _refuse_locally(model: str, workspace: Path) -> None:
    """A clear error before anything runs: a local run has no store to resolve data versions in
    or to keep a pipeline's step results."""
    from modelrunner.spec.workspace import Workspace

    spec = Workspace(workspace).model(model).spec
    inputs = spec.inputs
    if spec.is_pipeline:
        raise ModelrunnerError(
            f"model '{model}' is a pipeline (steps: {', '.join(spec.steps)}); --local runs single commands: "
            f"run it on a server (modelrunner serve, then modelrunner run {model})"
        )
    if inputs:
        raise ModelrunnerError(
            f"model '{model}' reads dataset inputs ({', '.join(sorted(inputs))}); --local does not support "
            f"dataset inputs yet: run it on a server (modelrunner serve, then modelrunner run {model})"
        )
