import sys

from localbatch.cli import main

sys.exit(main())
