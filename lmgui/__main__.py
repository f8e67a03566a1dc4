"""python -m lmgui"""

import sys

from lmgui.cli import main

sys.exit(main())
