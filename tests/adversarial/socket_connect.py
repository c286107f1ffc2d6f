# tries: TCP connect to 127.0.0.1 and to a public address
# expect: seccomp refuses socket(2) (and the network namespace is empty): PermissionError
# outcome: PermissionError|none
import socket

for addr in [('127.0.0.1', 22), ('127.0.0.1', 80), ('1.1.1.1', 53)]:
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(addr)
        print('ESCAPED', addr)
    except OSError as e:
        print(addr, 'refused:', e)
