# tries: sleep for an hour
# expect: wall-clock timeout
# outcome: timeout
import time

time.sleep(3600)
