"""Verify every DKIM-Signature of a message with dkimpy (Debian python3-dkim), an implementation
independent of Tern's. Usage: /usr/bin/python3 dkim_verify.py MESSAGE_FILE TXT_JSON
TXT_JSON maps "<selector>._domainkey.<domain>." to the TXT record text. Prints a JSON list of
booleans, one per signature, top first."""
import json
import sys

import dkim

records = json.load(open(sys.argv[2]))


def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return records.get(name, records.get(name.rstrip('.') + '.', '')).encode()


message = open(sys.argv[1], 'rb').read()
checker = dkim.DKIM(message)
count = sum(1 for line in message.split(b'\r\n\r\n', 1)[0].split(b'\r\n') if line.lower().startswith(b'dkim-signature:'))
results = []
for index in range(count):
    try:
        results.append(bool(checker.verify(idx=index, dnsfunc=dnsfunc)))
    except Exception as err:  # a broken signature is a failed verification, not a crash
        print(f'signature {index}: {err}', file=sys.stderr)
        results.append(False)
print(json.dumps(results))
