"""Imported by lb_probe: remembers which process imported it (the zygote, in a warm run).

LB_PROBE_IMPORT_DELAY makes the import slow, as a large framework's is.
"""

import os
import time

IMPORTED_BY = os.getpid()
time.sleep(float(os.environ.get("LB_PROBE_IMPORT_DELAY", "0")))
