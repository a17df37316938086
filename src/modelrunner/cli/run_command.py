"""``modelrunner run``: submit a run to the server (and follow it), or run a model here with --local."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from modelrunner.cli import options, output
from modelrunner.cli.client import ApiError, Client
from modelrunner.cli.params_input import combine, read_params_file, split_assignments
from modelrunner.cli.run_view import report_submission, wait_and_report
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.errors import ModelrunnerError
from modelrunner.spec.duration import HINT, parse_duration

_OUTCOMES = {"created": "created", "joined": "joined a run in flight", "cache_hit": "answered from the cache"}


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
            "booleans, JSON lists) and override --params-file. A file parameter takes a file: "
            "-p network=@links.geojson uploads it with the run.",
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
    timeout: Annotated[
        str | None,
        typer.Option(
            envvar="MODELRUNNER_TIMEOUT",
            callback=check_max_age,
            metavar="DURATION",
            help="This run's own timeout (e.g. 2h), within the limit the model declares "
            "(`overridable: {timeout: {max: 6h}}` in model.yaml); not part of the cache key.",
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
    batch: Annotated[
        Path | None,
        typer.Option(
            "--batch",
            envvar="MODELRUNNER_BATCH",
            exists=True,
            dir_okay=False,
            allow_dash=True,
            metavar="FILE.jsonl",
            help="Submit one run per line of this JSON-lines file (- reads stdin), each line an object of "
            "parameters over those of -p and --params-file; the other options apply to every run. Sent in "
            "batches of the server's limit, each taken whole or refused whole; prints the run ids in order.",
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
            help="Run here, without a server, from the workspace folder. A single model without dataset inputs "
            "runs once, uncached; a pipeline or a model with dataset inputs runs on a platform of its own in "
            "--store-dir (datasets synced there, results cached there).",
        ),
    ] = False,
    store_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELRUNNER_LOCAL_STORE",
            file_okay=False,
            help="With --local: the store of local pipeline runs and data versions. [default: `STATE_DIR/local-runs`]",
        ),
    ] = None,
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

    Many runs: `modelrunner run growth --batch rates.jsonl -p steps=100`, one object of parameters
    a line, such as `{"rate": 0.3}`.
    """
    if batch is not None and (local or wait):
        option = "--local" if local else "--wait"
        raise typer.BadParameter(f"{option} takes one run; --batch submits many to a server", param_hint="--batch")
    if local:
        if backend is not None:
            raise typer.BadParameter("--local runs here; --backend needs a server", param_hint="--backend")
        from modelrunner.cli.local_run import LocalOptions, run_locally

        request = LocalOptions(
            cache,
            parse_duration(max_age) if max_age is not None else None,
            _pins(pins),
            store_dir,
            _overrides(timeout),
        )
        code = run_locally(model, param, params_file, workspace, output_dir, json_output, request)
        raise typer.Exit(code)
    with Client(server) as client:
        if batch is not None:
            base = _request_body(client, model, param, params_file, cache, max_age, pins, backend)
            base.update({"overrides": _overrides(timeout)} if timeout is not None else {})
            submit_file(client, model, batch, base, json_output)
            return
        submitted = _submit(client, model, param, params_file, cache, max_age, pins, backend, _overrides(timeout))
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
    overrides: dict[str, Any],
) -> dict[str, Any]:
    files: dict[str, Path] = {}
    if any(a.partition("=")[2].startswith("@") for a in assignments or []):
        from modelrunner.cli.file_uploads import split_files

        assignments, files = split_files(client.model(model)["params"], assignments)
    body = _request_body(client, model, assignments, params_file, cache, max_age, pins, backend)
    if overrides:
        body["overrides"] = overrides
    if files:
        return client.submit_with_files(model, body, files)
    return client.submit(
        model,
        body["params"],
        body["cache"],
        body.get("max_age"),
        body.get("inputs"),
        body.get("backend"),
        overrides=overrides,
    )


def _request_body(
    client: Client,
    model: str,
    assignments: list[str] | None,
    params_file: Path | None,
    cache: CacheMode,
    max_age: str | None,
    pins: list[str] | None,
    backend: str | None,
) -> dict[str, Any]:
    """The body of a submit from the command line's options."""
    # The schema is only needed to type -p values; without them the POST alone names any problem.
    schema = client.model(model)["params"] if assignments else {}
    body: dict[str, Any] = {"params": combine(schema, read_params_file(params_file), assignments), "cache": cache.value}
    if max_age is not None:
        body["max_age"] = parse_duration(max_age)
    if pins:
        body["inputs"] = _pins(pins)
    if backend is not None:
        body["backend"] = backend
    return body


def submit_file(client: Client, model: str, path: Path, base: dict[str, Any], json_output: bool) -> None:
    """Submit a run for each line of ``path``, its parameters over ``base``'s, in batches the
    server takes; print the run ids in order (or, with ``json_output``, the server's answers).

    Each batch is taken whole or refused whole; a refusal names the lines at fault. The batches
    sent before it stay submitted, and their ids are printed: submitting the file again after a
    fix joins those runs or answers them from the cache instead of computing them twice."""
    from modelrunner.settings import Settings  # pydantic-settings is slow to import; only for batches

    lines = _read_lines(path)
    size = Settings.model_fields["max_batch_runs"].default  # the server's limit, unless it says otherwise
    answers: list[dict[str, Any]] = []
    try:
        with Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), console=output.stderr()
        ) as progress:
            task = progress.add_task(f"submitting {len(lines)} runs of {model}", total=len(lines))
            while len(answers) < len(lines):
                chunk = lines[len(answers) : len(answers) + size]
                bodies = [{**base, "params": {**base["params"], **params}} for _, params in chunk]
                try:
                    answers += client.submit_batch(model, bodies)
                except ApiError as exc:
                    smaller = _smaller_batch(exc, len(chunk))
                    if smaller is None:
                        raise _by_line(exc, path, chunk, len(answers)) from exc
                    size = smaller
                    continue
                progress.advance(task, len(chunk))
    finally:
        _report_batch(answers, json_output)


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, parameters) of each non-blank line of a JSON-lines file; ``-`` is stdin."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelrunnerError(f"cannot read {path}: {exc.strerror or exc}") from exc
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            params = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ModelrunnerError(f"{path} line {number}: not valid JSON: {exc.msg}") from exc
        if not isinstance(params, dict):
            raise ModelrunnerError(f'{path} line {number}: must be an object of parameters, such as {{"n": 3}}')
        lines.append((number, params))
    return lines


def _smaller_batch(error: ApiError, sent: int) -> int | None:
    """How many runs to send at once after ``error`` refused a batch of ``sent`` for its size,
    as the server's answer says; None when it was refused for something else."""
    if error.status_code == 413 and sent > 1:
        return sent // 2  # over the server's max_body_bytes: halve until it fits
    if error.status_code == 422 and isinstance(error.detail, list):
        for item in error.detail:
            if isinstance(item, dict) and item.get("type") == "too_long" and item.get("loc") == ["body", "runs"]:
                limit = int(item.get("ctx", {}).get("max_length", 0))
                return limit if 0 < limit < sent else None
    return None


def _by_line(error: ApiError, path: Path, chunk: list[tuple[int, dict[str, Any]]], submitted: int) -> ModelrunnerError:
    """The server's refusal of ``chunk`` with each refused item named by its line of ``path``."""
    problems = []
    for item in error.detail if isinstance(error.detail, list) else []:
        loc = item.get("loc", []) if isinstance(item, dict) else []
        if len(loc) < 3 or loc[:2] != ["body", "runs"] or not isinstance(loc[2], int) or loc[2] >= len(chunk):
            continue
        problems.append(f"{path} line {chunk[loc[2]][0]}: {item.get('msg', 'refused')}")
    message = "\n".join(problems) or error.message
    if submitted:
        message += (
            f"\nthe {submitted} runs before line {chunk[0][0]} were submitted (their ids are printed); "
            "submitting the file again joins them or answers them from the cache"
        )
    return ModelrunnerError(message)


def _report_batch(answers: list[dict[str, Any]], json_output: bool) -> None:
    """The run ids on stdout, one a line, in order, and how many of each outcome on stderr."""
    if json_output:
        output.print_json(answers)
        return
    console = output.stdout()
    for answer in answers:
        console.print(str(answer["id"]))
    outcomes = Counter(answer["submission"] for answer in answers)
    said = ", ".join(f"{outcomes[kind]} {_OUTCOMES[kind]}" for kind in _OUTCOMES if outcomes[kind])
    output.hint(f"{len(answers)} runs submitted: {said}" if answers else "no runs submitted")


def _pins(pins: list[str] | None) -> dict[str, str]:
    """``-i`` values (checked by split_pins) as input name -> version."""
    return {name.strip(): version.strip() for name, _, version in (pin.partition("=") for pin in pins or [])}


def _overrides(timeout: str | None) -> dict[str, Any]:
    """The run's own resource values (spec/overrides.py), as the options give them."""
    return {"timeout": timeout} if timeout is not None else {}
