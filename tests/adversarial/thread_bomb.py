# tries: start threads until the system refuses
# expect: RLIMIT_NPROC / RLIMIT_AS: an exception, interpreter lives on
# outcome: RuntimeError|MemoryError|crash|timeout
import threading
import time

while True:
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
