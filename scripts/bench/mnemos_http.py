"""The one HTTP helper of the benchmark scripts (standard library only)."""
import json
import urllib.request


def call(base, method, path, body=None, token=None):
    """`method path` on a mnemos server at `base`; the JSON answer."""
    req = urllib.request.Request(base + path, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(req, data, timeout=600) as r:
        return json.loads(r.read())
