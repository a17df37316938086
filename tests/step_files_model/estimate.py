import json
import os

from lib.common import FACTOR, outputs, record

region = json.loads(os.environ["MODELRUNNER_ITEM"])
record(f"estimate:{region}")
(outputs() / "estimate.json").write_text(json.dumps({"region": region, "value": len(region) * FACTOR}))
