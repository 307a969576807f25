"""Send one request the way Python's http.client does: the whole body first,
then read the answer. Prints the answer (or the error that ended the
exchange) as one JSON object on stdout.

usage: send_whole_body.py HOST PORT METHOD PATH CONTENT_TYPE SIZE length|chunked
"""

import http.client
import json
import sys


def body_of(size):
    # A JSON object padded with spaces: what a manifest looks like, only big.
    return b"{" + b" " * (size - 2) + b"}"


def chunks(data, size=64 * 1024):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def main():
    host, port, method, path, content_type, size, framing = sys.argv[1:8]
    data = body_of(int(size))
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": content_type}
    try:
        if framing == "chunked":
            conn.request(method, path, body=chunks(data), headers=headers, encode_chunked=True)
        else:
            conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        answer = {"status": response.status, "body": response.read().decode("utf-8", "replace")}
    except OSError as e:
        answer = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
