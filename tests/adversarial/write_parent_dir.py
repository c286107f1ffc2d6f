# tries: write ../ beside the workdir
# expect: read-only mount: OSError; nothing created
# outcome: OSError|PermissionError
open('../sdsbx-escape-parent', 'w').write('x')
print('ESCAPED')
