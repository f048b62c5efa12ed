import sys

from pixglot.cli import main

sys.exit(main())
