"""`python -m onectl`."""

import sys

from onectl.cli import main

sys.exit(main())
