"""Run the command line the test gave (parameters arrive as JSON on stdin)."""

import json
import subprocess
import sys

parameters = json.load(sys.stdin)
sys.exit(subprocess.call(["bash", "-c", parameters["cmd"]]))
