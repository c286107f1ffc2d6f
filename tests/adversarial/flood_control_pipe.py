# tries: write garbage frames into the control pipe
# expect: the host rejects the frame (size/JSON check): crash observation, restart
# outcome: crash
import os
import time

for fd in range(3, 1100):
    try:
        os.write(fd, b'\xff\xff\xff\xff' + b'garbage' * 1000)
    except OSError:
        pass
time.sleep(0.5)
