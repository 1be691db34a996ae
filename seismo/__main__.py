import sys

from seismo.cli import main

sys.exit(main())
