# Builds a dict of 10000 entries (strings up to 700 bytes), JSON round trip.
import json
d = {"k%d" % i: ["v" * (i % 700), i, {"x": i}] for i in range(10000)}
s = json.dumps(d)
e = json.loads(s)
print("py-json:", len(s), len(e))
