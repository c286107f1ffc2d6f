# tries: read the host's (and every process's) /proc/<pid>/environ for secrets
# expect: other uids' environ is unreadable (ptrace access check)
# outcome: none
import os

found = []
for pid in [os.getppid()] + [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        data = open(f'/proc/{pid}/environ', 'rb').read()
    except OSError:
        continue
    if b'sk-test-planted' in data or b'_KEY=' in data:
        found.append(pid)
print('readable secrets:', found)
if found:
    print('ESCAPED')
