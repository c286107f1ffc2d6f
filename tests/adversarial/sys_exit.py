# tries: end the interpreter with sys.exit
# expect: SystemExit is caught: clear observation, state kept
# outcome: SystemExit
import sys

sys.exit(3)
