# tries: unbounded Python recursion
# expect: RecursionError
# outcome: RecursionError
def f(n):
    return f(n + 1)

f(0)
