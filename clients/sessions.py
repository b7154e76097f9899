"""The HTTP session both clients call through: pooled, and reading its environment once per host.

With ``trust_env`` on (requests' default) every request reads the environment again: the
proxies twice (each a scan of every variable, decoded), ``no_proxy``, the CA bundle variables
and ``~/.netrc``. At a worker's rate that was about a quarter of the CPU a call costs on our
side. :class:`Session` honours the same variables, read once: the proxies (and ``no_proxy``)
once per scheme and host, the CA bundle when the session is made. A ``.netrc`` is never read:
every call carries its own ``Authorization``, which a netrc entry would replace.

A request with nothing for the session's cookie jar, auth or parameters to merge into (the
clients' calls, while no server has set a cookie) skips requests' merging of them; the rest
(hooks, redirects, the cookies a response sets, proxies, verification) is requests' own.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from requests.utils import get_environ_proxies

__all__ = ["Session", "pooled_session"]


class Session(requests.Session):
    """A :class:`requests.Session` whose environment is read once per host, not once per request."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # requests' own per-request reading of the environment
        # The CA bundle variables (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), read by requests itself, once.
        found = requests.Session().merge_environment_settings("http://localhost/", {}, None, None, None)
        self._bundle: str | None = found["verify"] if isinstance(found["verify"], str) else None
        self._proxies: dict[tuple[str, str | None], dict[str, str]] = {}
        self._merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def request(  # type: ignore[override]
        self,
        method: str | bytes,
        url: Any,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: Any = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        """As :meth:`requests.Session.request`; without the merging of cookies, auth and
        parameters when neither the call nor the session has any (it costs a quarter of a call)."""
        if params or cookies or files or auth or hooks or self.params or self.auth or self.cookies:
            return super().request(
                method, url, params, data, headers, cookies, files, auth, timeout,
                allow_redirects, proxies, hooks, stream, verify, cert, json,
            )  # fmt: skip
        merged = CaseInsensitiveDict(self.headers)
        merged.update(headers or {})
        for name in [name for name, value in merged.items() if value is None]:
            del merged[name]  # a None header removes the session's, as requests does
        url = url.decode("utf-8") if isinstance(url, bytes) else url
        prepared = PreparedRequest()
        # PreparedRequest.prepare, less the parts with nothing to do here: no cookie to send (the
        # jar is empty, so its Cookie header would be none) and no credentials in the URL.
        prepared.prepare_method((method.decode() if isinstance(method, bytes) else method).upper())
        prepared.prepare_url(url, None)
        prepared.prepare_headers(merged)
        prepared._cookies = RequestsCookieJar()  # type: ignore[attr-defined]  # a redirect's cookies
        prepared.prepare_body(data or {}, None, json)
        if "@" in str(url):
            prepared.prepare_auth(None, url)  # user:password@host: requests' basic auth from it
        prepared.prepare_hooks(self.hooks)
        settings = self.merge_environment_settings(prepared.url, proxies or {}, stream, verify, cert)
        return self.send(prepared, timeout=timeout, allow_redirects=allow_redirects, **settings)

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        """What ``trust_env`` would merge (proxies, CA bundle), from what was read before.

        A call that asks for no proxies of its own gets the merge made for its origin before (with
        the same stream, verify and cert, and the session's own settings unchanged)."""
        asked = dict(proxies or {})
        no_proxy = asked.get("no_proxy")
        parts = urlsplit(str(url))
        origin = f"{parts.scheme}://{parts.netloc}"
        key: tuple[Any, ...] | None = None
        if not asked:
            key = (origin, stream, verify, cert, tuple(sorted(self.proxies.items())),
                   self.stream, self.verify, self.cert)  # fmt: skip
            if not _hashable(key):
                key = None
        if key is not None:
            with self._lock:
                known = self._merged.get(key)
            if known is not None:
                return {**known, "proxies": dict(known["proxies"])}
        with self._lock:
            found = self._proxies.get((origin, no_proxy))
        if found is None:
            found = get_environ_proxies(str(url), no_proxy=no_proxy)
            with self._lock:
                self._proxies[(origin, no_proxy)] = found
        for scheme, proxy in found.items():
            asked.setdefault(scheme, proxy)
        if self._bundle and (verify is True or verify is None):
            verify = self._bundle
        merged: Any = super().merge_environment_settings(url, asked, stream, verify, cert)
        if key is not None:
            with self._lock:
                self._merged[key] = {**merged, "proxies": dict(merged["proxies"])}
        return merged


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def pooled_session(pool_size: int, *, pool_connections: int = 4, max_retries: int | None = None) -> Session:
    """A :class:`Session` whose pool keeps ``pool_size`` connections per host (one per calling
    thread); ``max_retries=0`` turns urllib3's own retries off (a caller's loop retries)."""
    session = Session()
    options: dict[str, Any] = {"pool_connections": pool_connections, "pool_maxsize": pool_size}
    if max_retries is not None:
        options["max_retries"] = max_retries
    adapter = HTTPAdapter(**options)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
