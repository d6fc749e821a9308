"""`python -m ftui` runs the headless CLI."""

import faulthandler
import gc
import signal
import sys

from ftui.cli import main

# `kill -USR1 PID` prints every thread's stack to stderr and the run goes on: what a run that seems stuck is doing.
faulthandler.register(signal.SIGUSR1, all_threads=True)
code = main()
# Interpreter shutdown walks every object torch and transformers made in several garbage collections: after a tiny run
# that took 3-12 s on the 2-core machine at load 5-10, against under 1.5 s with them frozen first (the CLI's own
# output is written and flushed by now; bench in docs/performance.md). What Ctrl-C waits for ends sooner too.
gc.freeze()
sys.exit(code)
