# tries: fork without end, in every child too
# expect: RLIMIT_NPROC caps the processes; timeout; killpg + kill-by-uid remove them
# outcome: timeout|crash
import os

while True:
    try:
        os.fork()
    except OSError:
        pass
