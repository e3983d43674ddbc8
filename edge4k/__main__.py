import sys

from edge4k.cli import main

sys.exit(main())
