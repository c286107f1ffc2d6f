# tries: open files until the process runs out of descriptors
# expect: RLIMIT_NOFILE: OSError (Too many open files)
# outcome: OSError
fs = []
while True:
    fs.append(open('/dev/null'))
