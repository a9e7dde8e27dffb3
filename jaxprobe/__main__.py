import sys

from jaxprobe.cli import main

sys.exit(main())
