# tries: a child leaves the process group with setsid() and lives on
# expect: the cell ends; close() kills it by uid
# outcome: none
import os
import time

if os.fork() == 0:
    os.setsid()
    while True:
        time.sleep(1)
print('parent done')
