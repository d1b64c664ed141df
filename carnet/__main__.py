import sys

from carnet.cli import main

sys.exit(main())
