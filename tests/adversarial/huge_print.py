# tries: print 200 MB of text
# expect: output file capped by RLIMIT_FSIZE, observation truncated with a marker
# outcome: OSError|none|timeout
line = 'x' * 1_000_000
for _ in range(200):
    print(line)
