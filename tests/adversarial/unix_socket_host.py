# tries: connect to host unix sockets (the harness listens under /run and the workdir's parent, mode 0777)
# expect: seccomp refuses socket(2) of every family; /run and /tmp are hidden anyway
# outcome: none
import ctypes
import glob
import os
import socket
import struct

libc = ctypes.CDLL(None, use_errno=True)
paths = set()
for pattern in ['/run/*', '/run/*/*', '/var/run/*', '/tmp/*', '/tmp/.*/*', '/dev/log',
                '/run/dbus/system_bus_socket', '/var/run/docker.sock', '/run/containerd/containerd.sock',
                os.path.dirname(os.getcwd()) + '/*', '/run/sdsbx-host-*', '/tmp/sdsbx-host-*']:
    paths.update(glob.glob(pattern))
paths.update(['/run/sdsbx-host.sock', '/tmp/sdsbx-host.sock', '/dev/log'])
for path in sorted(paths):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect(path)
        print('ESCAPED', path)
    except OSError as e:
        print(path, 'socket module:', e)
    # The same in native code, below any Python-level hook.
    fd = libc.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
    if fd < 0:
        print(path, 'libc socket:', os.strerror(ctypes.get_errno()))
        continue
    addr = struct.pack('H', socket.AF_UNIX) + path.encode() + b'\0'
    if libc.connect(fd, addr, len(addr)) == 0:
        print('ESCAPED', path, 'via libc')
    os.close(fd)
# Abstract-namespace names (no file at all).
for name in [b'\0sdsbx-host', b'\0/org/freedesktop/systemd1/notify']:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(name)
        print('ESCAPED', name)
    except OSError as e:
        print(name, 'abstract:', e)
print('checked', len(paths), 'paths')
