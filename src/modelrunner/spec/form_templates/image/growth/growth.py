"""Logistic population growth inside a container image: the model contract without modelrunner
installed (the parameters file and the outputs folder are named by MODELRUNNER_* variables)."""

import csv
import json
import math
import os
from pathlib import Path

params = json.loads(Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
initial, rate, capacity, steps = (params[name] for name in ("initial", "rate", "capacity", "steps"))
with open(Path(os.environ["MODELRUNNER_OUTPUTS"]) / "series.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["step", "population"])
    for step in range(steps + 1):
        writer.writerow([step, round(capacity / (1 + (capacity / initial - 1) * math.exp(-rate * step)), 4)])
print("::progress:: 1.0 done", flush=True)
