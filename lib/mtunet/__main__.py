import sys

from mtunet.cli import main

sys.exit(main())
