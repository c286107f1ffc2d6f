# tries: a busy daemon thread left running after the cell returns
# expect: the cell ends; later cells still run; close() kills it
# outcome: none
import threading


def spin():
    while True:
        pass

threading.Thread(target=spin, daemon=True).start()
print('started')
