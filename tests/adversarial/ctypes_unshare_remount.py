# tries: new user+mount namespace via ctypes, then unmount/remount the read-only /tmp
# expect: inherited mounts are locked: /tmp stays read-only
# outcome: OSError|PermissionError
import ctypes

libc = ctypes.CDLL(None, use_errno=True)
print('unshare:', libc.unshare(0x10000000 | 0x00020000), ctypes.get_errno())
print('umount:', libc.umount2(b'/tmp', 2), ctypes.get_errno())
print('remount:', libc.mount(None, b'/tmp', None, 32 | 4096, None), ctypes.get_errno())
open('/tmp/sdsbx-escape-userns', 'w').write('x')
print('ESCAPED')
