# tries: lift the recursion limit and recurse until the C stack overflows
# expect: RecursionError/MemoryError or a crash (SIGSEGV); restart + replay
# outcome: RecursionError|MemoryError|crash|timeout
import sys

sys.setrecursionlimit(10**7)

def f(n):
    return f(n + 1) + 1

f(0)
