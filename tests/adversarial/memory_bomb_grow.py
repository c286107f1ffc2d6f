# tries: grow memory in 50 MB chunks until something breaks
# expect: RLIMIT_AS: MemoryError (or a crash), host untouched
# outcome: MemoryError|crash|timeout
chunks = []
while True:
    chunks.append(bytearray(50 * 1024 * 1024))
