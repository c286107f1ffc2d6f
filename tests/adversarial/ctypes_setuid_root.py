# tries: regain root with setuid(0) / setresuid through ctypes
# expect: no capabilities after the drop: calls fail
# outcome: none
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
print('setuid:', libc.setuid(0), 'setresuid:', libc.setresuid(0, 0, 0))
print('uid now', os.getuid())
if os.getuid() == 0:
    print('ESCAPED')
