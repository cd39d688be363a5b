import sys

from podium.cli.app import main

sys.exit(main())
