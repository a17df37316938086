"""Trips of a scenario's OD matrix over the capacity of its open links (a deliberately small model)."""

import csv
import json
import os
from pathlib import Path

inputs = Path(os.environ["MODELRUNNER_INPUTS"])
params = json.loads(Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
scenario = inputs / "scenario"  # only the folder params.scenario names

closed = set()
if params.get("closures"):  # an uploaded file: its path relative to MODELRUNNER_INPUTS
    closed = {line.strip() for line in (inputs / params["closures"]).read_text().splitlines() if line.strip()}

links = json.loads((scenario / "links.geojson").read_text())["features"]
open_links = [f for f in links if str(f["properties"]["id"]) not in closed]
capacity = sum(float(f["properties"]["capacity"]) for f in open_links)
with (scenario / "od.csv").open(newline="") as handle:
    trips = sum(float(row["trips"]) for row in csv.DictReader(handle))

result = {
    "scenario": params["scenario"],
    "links_open": len(open_links),
    "links_closed": len(links) - len(open_links),
    "trips": trips,
    "capacity": capacity,
    "load": round(trips / capacity, 4) if capacity else None,
}
print(f"::progress:: 1.0 load {result['load']}")
Path(os.environ["MODELRUNNER_OUTPUTS"], "load.json").write_text(json.dumps(result, indent=2))
