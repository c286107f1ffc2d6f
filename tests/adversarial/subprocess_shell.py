# tries: spawn a shell that reads secrets and writes outside
# expect: the shell runs with the sandbox uid, no network, read-only fs
# outcome: none
import subprocess

r = subprocess.run(['sh', '-c', 'id; cat /etc/shadow; touch /tmp/sdsbx-escape-sh; ls /root'],
                   capture_output=True, text=True)
print(r.stdout, r.stderr)
if 'root:' in r.stdout:
    print('ESCAPED')
