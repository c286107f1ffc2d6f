# tries: close every fd, including the hidden control pipe
# expect: the host sees a broken channel: crash observation, restart + replay
# outcome: crash
import os

os.closerange(3, 4096)
print('closed')
