# tries: os.write 200 MB straight to fd 1, bypassing sys.stdout
# expect: captured in the same capped file; truncated observation
# outcome: OSError|none|timeout
import os

block = b'y' * 1_000_000
for _ in range(200):
    os.write(1, block)
