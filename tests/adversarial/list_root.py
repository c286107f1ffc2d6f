# tries: list and read /root
# expect: /root is an empty tmpfs with mode 0711: PermissionError
# outcome: PermissionError
import os

print(os.listdir('/root'))
print('ESCAPED')
