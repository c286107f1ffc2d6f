# tries: allocate a 80 GB list at once
# expect: RLIMIT_AS: MemoryError, interpreter lives on
# outcome: MemoryError
a = [0] * (10**10)
