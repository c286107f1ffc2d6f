# tries: create a file in /tmp
# expect: read-only mount: OSError (EROFS); nothing created
# outcome: OSError|PermissionError
open('/tmp/sdsbx-escape-tmp', 'w').write('x')
print('ESCAPED')
