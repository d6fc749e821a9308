"""`python -m ftui` runs the headless CLI."""

import sys

from ftui.cli import main

sys.exit(main())
