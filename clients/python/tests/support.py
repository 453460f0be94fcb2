"""What the tests share: the servers under test, fresh queue names, raw HTTP.

The tests run against real presque servers, never a mock. `cargo test --test
python_client` starts two (one without auth, one with tokens) and passes their
addresses and tokens in the environment; to run the tests by hand, start servers and
set the same variables:

    PRESQUE_URL=http://127.0.0.1:5000 \\
    PRESQUE_AUTH_URL=http://127.0.0.1:5001 PRESQUE_TEST_TOKENS=producer:P,consumer:C,admin:A \\
    PYTHONPATH=clients/python/src python3 -m unittest discover -s clients/python/tests -v
"""

from __future__ import annotations

import json
import os
import sys
import unittest
import urllib.error
import urllib.request
import uuid
from typing import Dict, Mapping, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: these tests need a running presque server "
            "(`cargo test --test python_client` starts them; see tests/support.py)"
        )
    return value


URL = _required("PRESQUE_URL")


def auth_url() -> str:
    return _required("PRESQUE_AUTH_URL")


def tokens() -> Dict[str, str]:
    """Role -> token of the server at :func:`auth_url`."""
    pairs = (entry.split(":", 1) for entry in _required("PRESQUE_TEST_TOKENS").split(","))
    return {role: token for role, token in pairs}


def queue_name(test: unittest.TestCase) -> str:
    """A queue no other test uses (the servers are shared)."""
    return f"{test.id().rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:8]}"


def raw(
    method: str,
    path: str,
    *,
    body: Optional[bytes] = None,
    headers: Optional[Mapping[str, str]] = None,
    url: str = URL,
) -> Tuple[int, Dict[str, str], bytes]:
    """One request with urllib, independent of the client under test: status,
    headers (lower-cased names) and the body's exact bytes."""
    request = urllib.request.Request(url + path, data=body, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def raw_json(method: str, path: str, **kwargs: object) -> object:
    status, _, body = raw(method, path, **kwargs)  # type: ignore[arg-type]
    if status != 200:
        raise AssertionError(f"{method} {path}: {status} {body!r}")
    return json.loads(body)
