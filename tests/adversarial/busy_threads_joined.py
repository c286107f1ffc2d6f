# tries: busy loops in 4 threads that the cell waits for
# expect: wall-clock timeout kills the whole process
# outcome: timeout
import threading


def spin():
    while True:
        pass

ts = [threading.Thread(target=spin) for _ in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
