"""The chain model's steps: each appends `start`/`end` lines to the ledger, `start` with what it
found in its inputs, so tests count what ran, in what order, and what each run saw."""

import json
import os
import sys
import time
from pathlib import Path

step = sys.argv[1]
params = json.loads(Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
inputs = Path(os.environ["MODELRUNNER_INPUTS"])
outputs = Path(os.environ["MODELRUNNER_OUTPUTS"])
item = json.loads(os.environ["MODELRUNNER_ITEM"]) if "MODELRUNNER_ITEM" in os.environ else None
name = step if item is None else f"{step}:{item}"
seen = ",".join(sorted(str(p.relative_to(inputs)) for p in inputs.rglob("*") if p.is_file())) or "-"


def write(line: str) -> None:
    if params["ledger"]:
        with open(params["ledger"], "a") as ledger:
            ledger.write(line + "\n")


write(f"start {name} {seen}")
if step == "tests" and item == params["slow"]:
    time.sleep(params["sleep"])
if step == "tests" and item == params["fail"]:
    write(f"end {name}")
    sys.exit(f"the tests of {item} failed")
(outputs / f"{step}.txt").write_text(f"{name}\n")
write(f"end {name}")
