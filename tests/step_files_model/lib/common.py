"""Shared by every step: the ledger each execution appends its name to."""

import json
import os
from pathlib import Path

FACTOR = 1


def params():
    return json.loads(Path(os.environ["MODELRUNNER_PARAMS"]).read_text())


def record(name):
    ledger = params()["ledger"]
    if ledger:
        with open(ledger, "a") as out:
            out.write(name + "\n")


def outputs():
    return Path(os.environ["MODELRUNNER_OUTPUTS"])


def inputs():
    return Path(os.environ["MODELRUNNER_INPUTS"])
