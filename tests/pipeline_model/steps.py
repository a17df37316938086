"""The test pipeline's steps: each appends what it ran to the ledger, so tests see every execution."""

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
if params["ledger"]:
    with open(params["ledger"], "a") as ledger:
        ledger.write(f"{step}{'' if item is None else ':' + item}\n")
time.sleep(params["sleep"])
print("::progress:: 0.5 working", flush=True)
if step == "estimate":
    if item == params["fail_region"]:
        sys.exit(f"no data for {item}")
    (outputs / "estimate.json").write_text(json.dumps({"region": item, "value": len(item)}))
elif step == "summarise":
    found = sorted(p.parent.name for p in inputs.glob("estimate/*/estimate.json"))
    values = {p.parent.name: json.loads(p.read_text())["value"] for p in inputs.glob("estimate/*/estimate.json")}
    (outputs / "summary.json").write_text(json.dumps({"regions": found, "total": sum(values.values())}))
elif step == "publish":
    summary = json.loads((inputs / "summarise" / "summary.json").read_text())
    (outputs / "published.txt").write_text(f"{len(summary['regions'])} regions, total {summary['total']}\n")
elif step == "check":
    (outputs / "checked.txt").write_text("ok\n")
