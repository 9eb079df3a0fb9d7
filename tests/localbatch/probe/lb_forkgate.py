"""Preloaded by a warm-interpreter test to hold the zygote and its children at chosen points.

Imported with LB_FORKGATE_DIR set (the zygote gets it from the jobs' environment), it hooks the
importing process's forks (`os.register_at_fork`): after its Nth fork the zygote creates
DIR/at-parent-N, then waits until DIR/parent-N exists before going on (registering the child's
handshake pipe, reaping, selecting); the Nth child waits for DIR/child-N before anything else,
i.e. before it leads its own session and closes its end of the handshake pipe.

Run as a job, `python -m lb_forkgate NAME`: writes its pid to DIR/running-NAME, then exits once
DIR/exit-NAME exists.
"""

import os
import sys
import time
from pathlib import Path


def _wait(path: Path) -> None:
    while not path.exists():
        time.sleep(0.005)


if __name__ == "__main__":
    gates = Path(os.environ["LB_FORKGATE_DIR"])
    name = sys.argv[1]
    (gates / f"running-{name}.tmp").write_text(str(os.getpid()))
    (gates / f"running-{name}.tmp").rename(gates / f"running-{name}")
    _wait(gates / f"exit-{name}")
elif os.environ.get("LB_FORKGATE_DIR"):
    GATES = Path(os.environ["LB_FORKGATE_DIR"])
    forks = 0

    def _after_in_parent() -> None:
        global forks  # noqa: PLW0603 (the zygote's count of its forks)
        forks += 1
        (GATES / f"at-parent-{forks}").touch()
        _wait(GATES / f"parent-{forks}")

    def _after_in_child() -> None:
        _wait(GATES / f"child-{forks + 1}")

    os.register_at_fork(after_in_parent=_after_in_parent, after_in_child=_after_in_child)
