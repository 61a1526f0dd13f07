import sys

from asymlora.cli import main

sys.exit(main())
