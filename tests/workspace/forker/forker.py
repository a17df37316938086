import os
import subprocess
import sys
import time

from modelrunner import job

params = job.params()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(params["pidfile"], "w") as handle:
    handle.write(f"{os.getpid()} {child.pid}\n")
job.progress(0.5, "child started")
time.sleep(params["seconds"])
