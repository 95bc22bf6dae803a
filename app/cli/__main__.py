"""`python -m app.cli`: the `davpush` command without its console script."""
import sys

from . import main

sys.exit(main())
