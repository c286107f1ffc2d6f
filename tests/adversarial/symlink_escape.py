# tries: a symlink in the workdir pointing outside, then read and write through it
# expect: the link is followed with the sandbox uid's rights: read of /etc/shadow and write to /tmp fail
# outcome: OSError|PermissionError
import os

os.symlink('/tmp', 'out')
os.symlink('/etc/shadow', 'sh')
try:
    print(open('sh').read())
    print('ESCAPED')
except OSError as e:
    print('read failed:', e)
open('out/sdsbx-escape-link', 'w').write('x')
print('ESCAPED')
