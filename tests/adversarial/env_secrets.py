# tries: find API keys in the environment
# expect: the environment is a minimal allowlist: no *_KEY/*_TOKEN/*SECRET*
# outcome: none
import os

leaks = [k for k in os.environ if 'KEY' in k or 'TOKEN' in k or 'SECRET' in k]
print('leaks:', leaks)
if leaks:
    print('ESCAPED')
