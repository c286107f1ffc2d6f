# tries: ignore SIGTERM/SIGINT and sleep forever
# expect: the host uses SIGKILL on the process group: timeout
# outcome: timeout
import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(0.1)
