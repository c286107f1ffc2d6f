# tries: write into /var/tmp
# expect: read-only mount
# outcome: OSError|PermissionError|FileNotFoundError
open('/var/tmp/sdsbx-escape-vartmp', 'w').write('x')
print('ESCAPED')
