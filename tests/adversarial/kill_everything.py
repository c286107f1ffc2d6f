# tries: kill(-1, SIGKILL): every process it may signal, and the host by pid
# expect: only the sandbox uid's own processes can be signalled; host lives
# outcome: PermissionError|crash|none
import os
import signal

try:
    os.kill(os.getppid(), signal.SIGKILL)
    print('ESCAPED')
except PermissionError as e:
    print('host kill failed:', e)
os.kill(-1, signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)
