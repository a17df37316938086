import json
from pathlib import Path

from lib.common import inputs, outputs, record

record("summarise")
values = {p.parent.name: json.loads(p.read_text())["value"] for p in inputs().glob("estimate/*/estimate.json")}
layout = Path("summary_format.txt").read_text().strip()
(outputs() / "summary.txt").write_text(layout.format(regions=len(values), total=sum(values.values())) + "\n")
