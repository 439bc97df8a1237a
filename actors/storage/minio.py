"""The S3/MinIO backend of the ``Store`` interface (see ``storage.py`` for the key layout).

``MinioStore(conf)`` does no I/O; ``connect()`` builds the client, checks the credentials and creates the bucket if
it is missing. Two kinds of failure, told apart because only one of them fixes itself:

- a wrong setting (credentials, bucket name, endpoint syntax, a server that does not speak S3): ``StoreError`` naming
  the setting to fix (``frame_extractor.minio.*``); framewatch cannot start (exit code 1);
- a server that cannot be reached (refused, timed out, 5xx): ``StoreUnavailable``. The store stays usable: while the
  server is down every operation fails fast with ``StoreUnavailable`` and one request every ``retry_sec`` probes it
  (checking and creating the bucket first when that never succeeded), so storing resumes by itself. ``health()``
  says which state it is in. The store logs that state (``StateLog``): down once, a reminder every few minutes,
  back up once; never a line per request, however many actors keep trying.

Every request has short timeouts and few retries, so a dead endpoint costs seconds, not minutes, and start-up never
hangs. Keys given to and returned by this class are relative to ``base_path``; the bucket holds
``<base_path>/<key>``.

Thread-safety: the ``minio`` client and its urllib3 pool are shared by the writer, retention and HTTP threads.
Secrets never appear in messages (``repr(MinioConf)`` masks them too).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name

from ..core.logstate import StateLog
from ..storage.store import StoreError, StoreUnavailable, join_key

if TYPE_CHECKING:
    from ..core.config import MinioConf

log = logging.getLogger(__name__)

#: S3 deletes at most this many keys per DeleteObjects request.
DELETE_BATCH = 1000

_SETTING = "frame_extractor.minio"
_CREDENTIAL_CODES = frozenset(
    {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}
)
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)
_BUSY_CODES = frozenset({"ServiceUnavailable", "SlowDown", "InternalError", "RequestTimeout"})


class MinioStore:
    """Frames and alert images in an S3 bucket (MinIO, SeaweedFS, AWS...)."""

    name = "minio"

    def __init__(self, conf: MinioConf, *, retries: int = 2, retry_sec: float = 1.0) -> None:
        self.conf = conf
        self._retries = retries
        self._retry_sec = retry_sec
        self._ready = False  # the bucket was checked (and created) on the server
        self._state = StateLog(log, f"storage ({self.name})")  # down (why) or up: the server's state, logged once
        self._probe_at = 0.0  # monotonic time before which an unavailable server is not asked again
        self._base = conf.base_path.strip("/")
        self._client: Minio | None = None
        self._http: urllib3.PoolManager | None = None
        self._lock = threading.Lock()
        self.list_calls = 0
        """How many listings ran (one per ``list_keys`` call): retention must list only at start-up."""

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Check the settings against the server and create the bucket if missing.

        Raises StoreError naming the setting when a setting is wrong (the store is closed), StoreUnavailable when the
        server cannot be reached (the store stays usable and tries again by itself; see the module docstring)."""
        conf = self.conf
        try:
            check_bucket_name(conf.bucket, strict=True)
        except ValueError as exc:
            raise StoreError(
                f"invalid bucket name {conf.bucket!r} ({exc}): use 3-63 lowercase letters, digits, '.' or '-' "
                f"- check {_SETTING}.bucket"
            ) from None
        if not conf.access_key or not conf.secret_key:
            raise StoreError(
                f"S3 credentials missing: set {_SETTING}.access_key/secret_key "
                "(or FRAMEWATCH_MINIO_ACCESS_KEY/FRAMEWATCH_MINIO_SECRET_KEY)"
            )
        timeout = conf.timeout_sec
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 3.0), read=timeout),
            maxsize=8,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or _certifi_where(),
            retries=urllib3.Retry(
                total=self._retries,
                connect=self._retries,
                read=min(self._retries, 1),  # a server that accepts but never answers costs 2 x timeout_sec
                backoff_factor=0.1,
                backoff_max=1.0,
                status_forcelist=(500, 502, 503, 504),
                raise_on_status=False,  # the last answer reaches minio, which turns it into an S3Error
            ),
        )
        try:
            client = Minio(
                conf.endpoint, access_key=conf.access_key, secret_key=conf.secret_key, secure=conf.use_ssl, http_client=http
            )
        except ValueError as exc:
            http.clear()
            raise StoreError(f"invalid S3 endpoint {conf.endpoint!r} ({exc}): expected host:port without scheme - check {_SETTING}.endpoint") from None
        self._http, self._client = http, client
        try:
            self._check_bucket()
        except StoreUnavailable:
            raise  # transient: keep the client, operations probe the server again
        except StoreError:
            self.close()
            raise

    def _check_bucket(self) -> None:
        """Make sure the bucket exists (create it if missing); then the store is ready."""
        client = self._connected()
        bucket = self.conf.bucket
        try:
            if not client.bucket_exists(bucket):
                try:
                    client.make_bucket(bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        except (MinioException, *_NETWORK_ERRORS) as exc:
            if _transient(exc):
                raise self._unavailable(f"cannot reach the S3 endpoint {self._url()} ({_reason(exc)})", exc) from None
            if isinstance(exc, S3Error):
                raise self._connect_error(exc) from None
            raise StoreError(  # an HTTP server that does not speak S3
                f"the server at {self._url()} does not answer like S3 ({str(exc)[:120]}) - check {_SETTING}.endpoint"
            ) from None
        self._ready = True
        self._answered()

    def _connect_error(self, exc: S3Error) -> StoreError:
        if exc.code in _CREDENTIAL_CODES:
            return StoreError(
                f"the S3 server at {self._url()} rejected the credentials ({exc.code}) - check "
                f"{_SETTING}.access_key/secret_key (or FRAMEWATCH_MINIO_ACCESS_KEY/FRAMEWATCH_MINIO_SECRET_KEY)"
            )
        if exc.code in ("InvalidBucketName", "BucketAlreadyExists"):
            return StoreError(f"cannot use bucket {self.conf.bucket!r} ({exc.code}: {exc.message}) - check {_SETTING}.bucket")
        return StoreError(f"S3 server at {self._url()} refused bucket {self.conf.bucket!r}: {exc.code}: {exc.message}")

    def close(self) -> None:
        with self._lock:
            http, self._http, self._client = self._http, None, None
        if http is not None:
            http.clear()

    def health(self) -> str:
        down = self._state.reason
        return f"down: {down}" if down else "up"

    # --- Store -----------------------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        client = self._usable()
        try:
            client.put_object(self.conf.bucket, self._full(key), io.BytesIO(data), len(data), content_type=content_type)
        except (MinioException, *_NETWORK_ERRORS) as exc:
            raise self._op_error("store", key, exc) from None
        self._answered()

    def get(self, key: str) -> bytes:
        client = self._usable()
        response = None
        try:
            response = client.get_object(self.conf.bucket, self._full(key))
            data = response.read()
            self._answered()
            return data
        except (MinioException, *_NETWORK_ERRORS) as exc:
            raise self._op_error("read", key, exc) from None
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Deletes in requests of up to 1000 keys; returns the keys not deleted (a key already gone counts as deleted)."""
        if not keys:
            return []
        try:
            client = self._usable()
        except StoreError:
            return list(keys)
        failed: list[str] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            by_full = {self._full(k): k for k in batch}
            try:
                errors = client.remove_objects(self.conf.bucket, [DeleteObject(k) for k in by_full])
                failed.extend(by_full.get(err.name, err.name) for err in errors)
            except (MinioException, *_NETWORK_ERRORS) as exc:
                self._op_error("delete", batch[0], exc)  # marks the server down when it is unreachable
                failed.extend(batch)
            else:
                self._answered()
        return failed

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys under the directory ``prefix`` (like ``LocalStore``: ``a/b`` lists ``a/b/...``, not ``a/bc``), in
        lexicographic order, fetched one page (1000 keys) at a time as the caller iterates."""
        client = self._usable()
        full = self._full(prefix)
        if full and not full.endswith("/"):
            full += "/"
        strip = len(self._base) + 1 if self._base else 0
        with self._lock:
            self.list_calls += 1
        try:
            for obj in client.list_objects(self.conf.bucket, prefix=full or None, recursive=True):
                if obj.object_name and not obj.is_dir:
                    yield obj.object_name[strip:]
        except (MinioException, *_NETWORK_ERRORS) as exc:
            raise self._op_error("list", prefix, exc) from None
        self._answered()

    def presigned_url(self, key: str, expires_sec: float = 3600) -> str:
        """A URL that lets a remote service GET ``key`` without credentials, valid for ``expires_sec``."""
        client = self._connected()
        try:
            return client.presigned_get_object(self.conf.bucket, self._full(key), expires=timedelta(seconds=expires_sec))
        except (MinioException, *_NETWORK_ERRORS) as exc:
            raise self._op_error("presign", key, exc) from None

    # --- helpers ---------------------------------------------------------------------------------------------------

    def _connected(self) -> Minio:
        client = self._client
        if client is None:
            raise StoreError("MinioStore used before connect() (or after close())")
        return client

    def _usable(self) -> Minio:
        """The client, once the server answers: while it is down, fail fast except for one probe per ``retry_sec``;
        a bucket never checked (the server was down at start, or lost it) is checked first."""
        client = self._connected()
        if self._state.is_down:
            with self._lock:
                now = time.monotonic()
                if now < self._probe_at:
                    raise StoreUnavailable(f"{self._state.reason} (retrying)")
                self._probe_at = now + self._retry_sec  # this caller probes; the others keep failing fast
        if not self._ready:
            self._check_bucket()
        return client

    def _answered(self) -> None:
        self._state.up()

    def _unavailable(self, reason: str, exc: BaseException) -> StoreUnavailable:
        """Mark the server down (fast failures until the next probe) and log it once per state change: only probes
        reach here, the fast failures in between are not counted."""
        with self._lock:
            self._probe_at = time.monotonic() + self._retry_sec
        down = f"{reason} - check {_SETTING}.endpoint and that the server runs"
        self._state.down(down, kind=_kind(exc))
        return StoreUnavailable(f"{down}; retrying")

    def _op_error(self, verb: str, key: str, exc: BaseException) -> StoreError:
        if _transient(exc):
            return self._unavailable(f"S3 endpoint {self._url()} unreachable ({_reason(exc)})", exc)
        if isinstance(exc, S3Error):
            if exc.code == "NoSuchBucket":
                self._ready = False  # the server lost it (a new data directory): create it again on the next call
            return StoreError(f"cannot {verb} {key!r} in bucket {self.conf.bucket!r}: {exc.code}: {exc.message}")
        if isinstance(exc, MinioException):
            return StoreError(f"cannot {verb} {key!r}: bad answer from {self._url()}: {str(exc)[:120]}")
        return StoreError(f"cannot {verb} {key!r}: S3 endpoint {self._url()} unreachable ({_reason(exc)})")

    def _full(self, key: str) -> str:
        return join_key(self._base, key)

    def _url(self) -> str:
        return f"{'https' if self.conf.use_ssl else 'http'}://{self.conf.endpoint}"


def _certifi_where() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def _transient(exc: BaseException) -> bool:
    """Unreachable, timed out or overloaded: worth trying again later (a wrong setting is not)."""
    if isinstance(exc, _NETWORK_ERRORS) or isinstance(exc, ServerError):
        return True
    if isinstance(exc, S3Error):
        return exc.code in _BUSY_CODES or (exc.response is not None and exc.response.status >= 500)
    return False


def _kind(exc: BaseException) -> str:
    """What kind of unavailability ``exc`` is, for the log: the cause, not the request id or the wording of the
    operation that met it (a connect and a put refused by the same dead server are one outage)."""
    if isinstance(exc, S3Error):
        return exc.code
    if isinstance(exc, ServerError):
        return f"HTTP {exc.status_code}"
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    """The innermost cause of a urllib3 error, short (``Connection refused``, ``timed out``...)."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "] " in text and "[Errno" in text:  # "HTTPConnection(...): Failed to establish ...: [Errno 111] Connection refused"
        return text.rsplit("] ", 1)[-1]
    return text.split(">: ", 1)[-1] if " object at 0x" in text else text
