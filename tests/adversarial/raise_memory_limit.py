# tries: raise RLIMIT_AS back to unlimited
# expect: hard limit cannot be raised without privileges: ValueError
# outcome: ValueError|PermissionError|OSError
import resource

resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print('ESCAPED')
