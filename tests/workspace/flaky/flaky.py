import sys

from modelrunner import job

marker = job.checkpoint() / "failed-once"
if not marker.exists():
    marker.write_text("x")
    print("first attempt fails on purpose")
    sys.exit(1)
(job.outputs() / "result.txt").write_text("second attempt succeeded\n")
