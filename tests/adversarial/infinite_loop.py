# tries: an infinite loop in the main thread
# expect: killed at the wall-clock timeout; state restored
# outcome: timeout
while True:
    pass
