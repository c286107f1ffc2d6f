# tries: write into /dev/shm (shared memory, world-writable)
# expect: read-only mount
# outcome: OSError|PermissionError
open('/dev/shm/sdsbx-escape-shm', 'w').write('x')
print('ESCAPED')
