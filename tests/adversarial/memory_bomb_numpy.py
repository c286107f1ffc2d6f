# tries: a numpy array far beyond the memory limit
# expect: RLIMIT_AS: numpy's MemoryError
# outcome: _ArrayMemoryError|MemoryError
import numpy as np

x = np.ones((10**6, 10**5))
