"""One POST to a checked address (hooks.guard.Target), without resolving the host name again.

urllib3's connection pools take the address to connect to and, apart from it, the name for TLS:
`server_hostname` is sent as SNI and the certificate is verified against it, so HTTPS works as if
the name had been resolved. Redirects are not followed (a redirect could point anywhere, past the
guard) and proxies from the environment are not used (the proxy would resolve the name).
"""

from __future__ import annotations

from dataclasses import dataclass

import urllib3

from hooks.guard import Target

# What is kept of a receiver's answer, for the delivery log.
ANSWER_MAX_BYTES = 1024


@dataclass(frozen=True)
class Answer:
    status: int
    text: str


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """Raises urllib3.exceptions.HTTPError when there is no answer (refused, timed out, TLS)."""
    headers = {"Host": target.host_header, **headers}
    if target.username or target.password:
        headers.update(urllib3.make_headers(basic_auth=f"{target.username}:{target.password}"))
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address, target.port, server_hostname=target.host, cert_reqs="CERT_REQUIRED"
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port)
    with pool:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            timeout=urllib3.Timeout(total=timeout),
            preload_content=False,
        )
        try:
            text = response.read(ANSWER_MAX_BYTES).decode(errors="replace")
        finally:
            response.release_conn()
    return Answer(response.status, text)
