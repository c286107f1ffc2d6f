# tries: fill the workdir until the disk is full
# expect: the workdir is a size-capped tmpfs (or RLIMIT_FSIZE): OSError
# outcome: OSError
i = 0
while True:
    with open(f'fill{i}', 'wb') as f:
        f.write(b'z' * (16 * 1024 * 1024))
    i += 1
