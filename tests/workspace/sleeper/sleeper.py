import os
import signal
import time

from modelrunner import job

params = job.params()
if params["ignore_sigterm"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if params["counter"]:
    with open(params["counter"], "a") as handle:
        handle.write(f"{os.getpid()}\n")
for step in range(10):
    job.progress(step / 10, f"step {step + 1} of 10")
    time.sleep(params["seconds"] / 10)
job.progress(1.0, "done")
(job.outputs() / "done.txt").write_text(f"slept {params['seconds']}\n")
