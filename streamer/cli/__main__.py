"""`python -m streamer.cli ...`: the `streamer` command without its installed script."""

import sys

from streamer.cli import main

sys.exit(main())
