# tries: write into /root
# expect: /root is hidden (tmpfs 0711, root-owned, read-only): PermissionError
# outcome: OSError|PermissionError
open('/root/sdsbx-escape-root', 'w').write('x')
print('ESCAPED')
