import os
import shutil

shutil.copy(os.environ["MODELRUNNER_PARAMS"], os.path.join(os.environ["MODELRUNNER_OUTPUTS"], "params.json"))
