"""A job for the warm-interpreter tests: `python -m lb_probe ACTION [ARG]`.

Its first line tells a warm run from a cold one: in a warm run lb_probe_state was imported by the
zygote, a process other than the job's.
"""

import atexit
import os
import signal
import subprocess
import sys
import threading
import time

import lb_probe_state


def main() -> None:
    action = sys.argv[1]
    warm = os.getpid() != lb_probe_state.IMPORTED_BY
    print(f"path={'warm' if warm else 'cold'}", flush=True)
    if action == "report":
        names = ("FROM_JD", "OVERRIDDEN", "AWS_BATCH_JOB_ID", "LB_TEST_PASSED", "LB_TEST_HIDDEN")
        for name in names:
            print(f"{name}={os.environ.get(name, 'unset')}")
        print(f"argv={sys.argv[1:]}")
        print(f"session_leader={os.getsid(0) == os.getpid()}")
        print(f"cwd_is_work={os.path.basename(os.getcwd()) == 'work'}")
        print(f"sched_batch={os.sched_getscheduler(0) == os.SCHED_BATCH}")
        print("to stderr", file=sys.stderr)
    elif action == "exit":
        sys.exit(int(sys.argv[2]))
    elif action == "exit-message":
        sys.exit("probe gave up")
    elif action == "finish":
        # What the interpreter does at exit, in order: wait for threads, run atexit, flush.
        # The atexit line is not flushed by anyone but the exit; it must come after the thread's line.
        atexit.register(lambda: sys.stdout.write("thread finished, then atexit ran"))
        threading.Thread(target=lambda: (time.sleep(0.5), print("thread finished"))).start()
    elif action == "interrupt":
        raise KeyboardInterrupt
    elif action == "raise":
        raise RuntimeError("probe failed on purpose")
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "sleep":
        if len(sys.argv) > 2 and sys.argv[2] == "ignore-term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "30"])
        print(f"grandchild={child.pid}", flush=True)
        time.sleep(30)


if __name__ == "__main__":
    main()
