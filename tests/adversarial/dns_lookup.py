# tries: resolve a host name
# expect: no network: gaierror
# outcome: gaierror|OSError
import socket

print(socket.gethostbyname('example.com'))
print('ESCAPED')
