"""`python -m cezsar` is the `cezsar` console script."""
import sys

from cezsar.cli import main

sys.exit(main())
