# tries: fetch a web page with urllib
# expect: no network: URLError
# outcome: URLError|OSError
import urllib.request

urllib.request.urlopen('http://example.com', timeout=1).read()
print('ESCAPED')
