# tries: delete a host file and a host directory
# expect: read-only mounts and permissions: OSError
# outcome: OSError|PermissionError
import os
import shutil

try:
    os.remove('/etc/hostname')
    print('ESCAPED')
except OSError as e:
    print('remove failed:', e)
shutil.rmtree('/usr/share/doc')
print('ESCAPED')
