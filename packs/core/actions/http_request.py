"""core.http_request: send one HTTP request with the standard library and print the response.

Parameters arrive on stdin as one JSON document. Prints one JSON object: status_code, headers,
body (parsed when the response is JSON, else text) and elapsed_ms. Exits 1 on an HTTP status of
400 or more (the response is still printed) and 2 when no response came at all.
"""

from __future__ import annotations

import codecs
import json
import ssl
import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    params = json.load(sys.stdin)
    headers = dict(params.get("headers") or {})
    body = params.get("body")
    data = None
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode("utf-8")
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    elif body is not None:
        data = str(body).encode("utf-8")
    if params.get("auth_token"):
        headers["Authorization"] = "Bearer " + params["auth_token"]
    request = urllib.request.Request(
        params["url"], data=data, headers=headers, method=params.get("method", "GET")
    )
    context = ssl.create_default_context()
    if params.get("verify_tls") is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    try:
        response = urllib.request.urlopen(
            request, timeout=params.get("timeout", 30), context=context
        )
    except urllib.error.HTTPError as error:
        response = error
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        print(f"core.http_request: {params['url']}: {reason}", file=sys.stderr)
        return 2
    with response:
        raw = response.read()
        status = response.status
        response_headers = dict(response.headers.items())
    elapsed_ms = round((time.monotonic() - started) * 1000, 3)
    print(
        json.dumps(
            {
                "status_code": status,
                "headers": response_headers,
                "body": _body(raw, response_headers),
                "elapsed_ms": elapsed_ms,
            }
        )
    )
    return 1 if status >= 400 else 0


def _body(raw: bytes, headers: dict[str, str]) -> object:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    text = raw.decode(_charset(content_type), errors="replace")
    if "json" in content_type.split(";")[0]:
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"


if __name__ == "__main__":
    sys.exit(main())
