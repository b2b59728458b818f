#!/usr/bin/python3
"""FAKE slow load, in front of the REAL llama-server (argv[1:]): only the pace is faked.

It says at once the first state line the real server would say (loading, 0.0), then runs the real
llama-server with our stdin (goinfer's pipe: the exit line reaches it) and stderr, and passes its
stdout on, each "loading" state line held back FAKE_LOAD_DELAY seconds (default 1), so a tiny
model's load lasts long enough to be watched. Everything else passes at once, in order.
"""
import os
import subprocess
import sys
import time

PREFIX = b"cmd_child_to_router:state:"
delay = float(os.environ.get("FAKE_LOAD_DELAY", "1"))
out = sys.stdout.buffer
out.write(PREFIX + b'{"state":"loading","payload":{"stages":["text_model"],'
          b'"current":"text_model","value":0.0}}\n')
out.flush()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
for line in p.stdout:
    if line.startswith(PREFIX + b'{"state":"loading"'):
        time.sleep(delay)
    out.write(line)
    out.flush()
sys.exit(p.wait())
