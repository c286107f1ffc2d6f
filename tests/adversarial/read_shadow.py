# tries: read /etc/shadow
# expect: not root any more: PermissionError
# outcome: PermissionError
print(open('/etc/shadow').read())
print('ESCAPED')
