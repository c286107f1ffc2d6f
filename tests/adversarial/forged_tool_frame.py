# tries: forge a host-tool request for a tool the sandbox does not have
# expect: the host answers with an error frame, calls nothing
# outcome: none|RuntimeError|crash
import json
import os
import struct

msg = json.dumps({'type': 'tool', 'name': 'os_system', 'args': ['id'], 'kwargs': {}}).encode()
os.write(1001, struct.pack('>I', len(msg)) + msg)
print('reply bytes:', len(os.read(1000, 4096)))
