# tries: end the interpreter with os._exit
# expect: crash observation; restart + replay
# outcome: crash
import os

os._exit(0)
