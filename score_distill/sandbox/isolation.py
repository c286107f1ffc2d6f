"""Child-side isolation: runs inside the fresh interpreter process, before any model code.

This file is NOT imported by the host: the host reads its source and hands it to ``python -I -c``
together with ``interpreter.py``, so the child never needs read access to the repository. It uses
the standard library only and must stay self-contained.

Order matters and is the whole point of this file:
namespaces (network, mounts) -> mounts (read-only everything, hide /root, /run, /tmp..., rw workdir) ->
control fds moved high -> resource limits -> drop privileges (root: setuid to the sandbox uid;
unprivileged: drop all capabilities of the user namespace) -> no_new_privs -> seccomp socket filter.
RLIMIT_NPROC does not bind root, which is why limits come before the privilege drop.
"""

import ctypes
import errno
import os
import resource
import socket

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = 1024, 2048, 1 << 21
_PER_MOUNT_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC,
                    "noatime": _MS_NOATIME, "nodiratime": _MS_NODIRATIME, "relatime": _MS_RELATIME}
_PR_SET_NO_NEW_PRIVS = 38
_SYS_CAPSET = 126  # x86_64; other arches: see _capset()

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _enc(s):
    return s.encode() if isinstance(s, str) else s


def _mount(src, target, fstype, flags, data=None):
    enc = _enc
    _check(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _mountinfo():
    """(mount point, per-mount flags) of every mount, decoding mountinfo's octal escapes."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            parts = line.split()
            mp = parts[4].decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
            flags = 0
            for opt in parts[5].decode().split(","):
                flags |= _PER_MOUNT_FLAGS.get(opt, 0)
            out.append((mp, flags))
    return out


def _setup_mounts(workdir, spec, report):
    # Nothing we do here may propagate back to the host's mount namespace.
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # Hide directories (e.g. /root) behind an empty tmpfs, re-exposing read-only just what the
    # interpreter needs from inside them (pyenv/venv installs often live under /root or /home).
    hide, expose = spec["hide"], spec["expose"]
    done = set()
    for h in hide:
        real = os.path.realpath(h)
        if not os.path.isdir(h) or real == "/" or real in done:  # /var/run is usually a link to /run
            continue
        done.add(real)
        h = real
        keep = [p for p in expose if p == h or p.startswith(h.rstrip("/") + "/")]
        fds = [(p, os.open(p, os.O_PATH)) for p in keep if os.path.isdir(p)]
        _mount("tmpfs", h, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0711,size=1m")
        for p, fd in fds:
            os.makedirs(p, mode=0o711, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", p, None, _MS_BIND | _MS_REC)
            os.close(fd)
        report["hidden"].append(h)
    # Everything read-only: the model may write only in its workdir (bound rw below).
    failed = []
    for mp, flags in _mountinfo():
        try:
            _mount(None, mp, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | flags)
        except OSError as e:
            failed.append(f"{mp} ({e.strerror})")
    # The workdir is a size-capped tmpfs private to this namespace: the model can fill neither the
    # host's disk nor any other directory, and it vanishes with the interpreter.
    _mount("tmpfs", workdir, "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={spec['workdir_mb']}m,mode=0700,uid={spec['uid']},gid={spec['gid']}")
    report["readonly_failed"] = failed


def _capset_zero():
    """Drop every capability (used inside an unprivileged user namespace, where we are 'root')."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()
    nr = {"x86_64": 126, "aarch64": 91}.get(os.uname().machine, _SYS_CAPSET)
    _check(_libc.syscall(nr, header, data), "capset")


# -- seccomp: no socket of any family --------------------------------------------------------------
# A network namespace stops IP, but connect(2) to a path-named unix socket works through any
# mount that shows the socket file (D-Bus, journald, container runtimes, local servers). So the
# kernel refuses socket(2) outright, whatever the family. socketpair(2) stays allowed for AF_UNIX
# only: it makes two connected ends and nothing else (like pipe(2)), it cannot address anything
# outside, and asyncio's self-pipe needs it. Also refused: io_uring (its SOCKET/CONNECT operations
# make sockets without socket(2)), pidfd_getfd (takes a socket from another process), and ptrace /
# process_vm_readv/writev (drive another process into doing it). Those last three are already
# refused across uids; the filter keeps them refused where all episodes share one uid.
# Hand-written classic BPF instead of libseccomp: this file must stay stdlib-only (the child gets
# it on its command line), libseccomp's own binding is not pip-installable (Debian's
# python3-seccomp is built against the C library) and pyseccomp still needs libseccomp.so on the
# host; the filter is a score of instructions.
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_NR = {  # socketpair, then the refused syscalls: socket, ptrace, process_vm_readv/writev
    "x86_64": {"socketpair": 53, "deny": (41, 101, 310, 311)},
    "aarch64": {"socketpair": 199, "deny": (198, 117, 270, 271)},
}
_NR_DENY_COMMON = (425, 426, 427, 438)  # io_uring_setup/_enter/_register, pidfd_getfd: same on both arches
_X32_SYSCALL_BIT = 0x40000000  # x86_64's x32 ABI has its own socket number: refuse that whole ABI
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _socket_filter(machine):
    """The BPF program as (code, jt, jf, k); a jump skips jt/jf instructions after itself."""
    deny_nrs = list(_NR[machine]["deny"]) + list(_NR_DENY_COMMON)
    n = len(deny_nrs)
    pair_check = 7 + n  # index of the socketpair family check
    deny = pair_check + 3  # index of the final "refuse"
    prog = [
        (_BPF_LD_W_ABS, 0, 0, 4),                               # 0 seccomp_data.arch
        (_BPF_JEQ_K, 1, 0, _AUDIT_ARCH[machine]),               # 1 native ABI -> 3
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.EPERM),   # 2 any other ABI (i386 int 0x80): refused
        (_BPF_LD_W_ABS, 0, 0, 0),                               # 3 seccomp_data.nr
        (_BPF_JGE_K, deny - 5, 0, _X32_SYSCALL_BIT),            # 4 x32 ABI -> deny
        (_BPF_JEQ_K, pair_check - 6, 0, _NR[machine]["socketpair"]),  # 5 -> family check
    ]
    for i, nr in enumerate(deny_nrs):                           # 6 .. 5+n: refused outright
        prog.append((_BPF_JEQ_K, deny - (6 + i) - 1, 0, nr))
    prog += [
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),                 # 6+n everything else
        (_BPF_LD_W_ABS, 0, 0, 16),                              # socketpair: args[0] (family), low 32 bits
        (_BPF_JEQ_K, 0, 1, socket.AF_UNIX),                     # AF_UNIX -> allow, else deny
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.EPERM),   # deny: EPERM
    ]
    assert prog[pair_check] == (_BPF_LD_W_ABS, 0, 0, 16) and len(prog) == deny + 1
    return prog


def _install_socket_filter():
    """Install the filter (needs no_new_privs first) and check that the kernel enforces it."""
    machine = os.uname().machine
    if machine not in _AUDIT_ARCH:
        raise OSError(errno.ENOSYS, f"no seccomp socket filter for architecture {machine}")
    # prctl filters only the calling thread (and what it starts later): there must be no other yet.
    if len(os.listdir("/proc/self/task")) != 1:
        raise OSError(errno.EBUSY, "the interpreter already runs several threads")
    prog = _socket_filter(machine)
    arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), arr)
    _check(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
           "prctl(PR_SET_SECCOMP)")
    try:  # measured, not assumed
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
    except PermissionError:
        return
    raise OSError(errno.EPERM, "seccomp filter installed but socket(2) still works")


def _network_isolated():
    # A fresh network namespace has only a loopback interface (down); the host's have more.
    return [n for _, n in socket.if_nameindex()] == ["lo"]


def isolate(spec):
    """Apply every protection that this machine allows; return a report of what is in force."""
    report = {"uid": None, "network": "none", "sockets": "allowed", "filesystem": "permissions-only", "hidden": [],
              "limits": {}, "privileges": "unchanged", "errors": []}
    root = os.geteuid() == 0
    workdir = spec["workdir"]
    want_net = spec["network"] == "namespace"
    flags = _CLONE_NEWNS | (_CLONE_NEWNET if want_net else 0)
    userns = False
    if _libc.unshare(flags | (0 if root else _CLONE_NEWUSER)) == 0:
        if not root:  # keep our identity inside the user namespace: files keep their owners
            userns = True
            uid, gid = os.getuid(), os.getgid()
            with open("/proc/self/setgroups", "w") as f:
                f.write("deny")
            with open("/proc/self/uid_map", "w") as f:
                f.write(f"{uid} {uid} 1")
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"{gid} {gid} 1")
        if want_net and _network_isolated():
            report["network"] = "namespace"
        try:
            _setup_mounts(workdir, spec, report)
            report["filesystem"] = "read-only-except-workdir"
        except OSError as e:
            report["errors"].append(str(e))
    else:
        report["errors"].append(f"unshare: {os.strerror(ctypes.get_errno())}")
    if (want_net and report["network"] != "namespace") or spec["network"] == "audit-hook":
        report["network"] = "audit-hook"  # interpreter.py installs the hook
    # Control fds go high so that redirections of 0/1/2 by model code cannot hit them.
    ctl_in, ctl_out = os.dup2(spec["ctl_in"], 1000), os.dup2(spec["ctl_out"], 1001)
    os.close(spec["ctl_in"])
    os.close(spec["ctl_out"])
    lim = spec["limits"]
    for name, value in (("RLIMIT_CPU", lim["cpu_s"]), ("RLIMIT_AS", lim["as_bytes"]),
                        ("RLIMIT_NPROC", lim["nproc"]), ("RLIMIT_FSIZE", lim["fsize_bytes"]),
                        ("RLIMIT_NOFILE", lim["nofile"]), ("RLIMIT_CORE", 0)):
        if value is None:
            continue
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            report["limits"][name] = value
        except (OSError, ValueError) as e:
            report["errors"].append(f"{name}: {e}")
    if root:
        uid, gid = spec["uid"], spec["gid"]
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # from root to non-root: every capability is gone too
        report["privileges"] = "setuid"
    elif userns:
        try:
            _capset_zero()
            report["privileges"] = "userns-no-capabilities"
        except OSError as e:
            report["errors"].append(str(e))
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    if spec["network"] != "allow":
        try:
            _install_socket_filter()
            report["sockets"] = "seccomp"
        except OSError as e:
            if spec.get("socket_filter", "required") == "required":
                # Fail closed: the host reports this text as the reason the interpreter did not start.
                msg = (f"sandbox: cannot refuse sockets in the kernel ({e}); this kernel lacks seccomp filters. "
                       "Set sandbox.socket_filter='if-available' to run without it (unsafe).")
                raise SystemExit(msg) from None
            report["sockets"] = "allowed"
            report["errors"].append(f"seccomp socket filter: {e}")
    report["uid"] = os.getuid()
    os.chdir(workdir)
    os.umask(0o077)
    return ctl_in, ctl_out, report
