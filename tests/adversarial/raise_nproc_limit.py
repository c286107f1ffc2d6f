# tries: raise RLIMIT_NPROC to fork more
# expect: hard limit cannot be raised: ValueError
# outcome: ValueError|PermissionError|OSError
import resource

resource.setrlimit(resource.RLIMIT_NPROC, (100000, 100000))
print('ESCAPED')
