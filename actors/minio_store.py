"""The S3/MinIO backend of the ``Store`` interface (see ``storage.py`` for the key layout).

``MinioStore(conf)`` does no I/O; ``connect()`` builds the client, checks the credentials and creates the bucket if
it is missing, and raises ``StoreError`` with a message naming the setting to fix (``frame_extractor.minio.*``).
Every request has short timeouts and few retries, so a dead endpoint costs seconds, not minutes, and start-up never
hangs. Keys given to and returned by this class are relative to ``base_path``; the bucket holds
``<base_path>/<key>``.

Thread-safety: the ``minio`` client and its urllib3 pool are shared by the writer, retention and HTTP threads.
Secrets never appear in messages (``repr(MinioConf)`` masks them too).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name

from .storage import StoreError, join_key

if TYPE_CHECKING:
    from .config import MinioConf

#: S3 deletes at most this many keys per DeleteObjects request.
DELETE_BATCH = 1000

_SETTING = "frame_extractor.minio"
_CREDENTIAL_CODES = frozenset(
    {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}
)
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class MinioStore:
    """Frames and alert images in an S3 bucket (MinIO, SeaweedFS, AWS...)."""

    name = "minio"

    def __init__(self, conf: MinioConf, *, retries: int = 2) -> None:
        self.conf = conf
        self._retries = retries
        self._base = conf.base_path.strip("/")
        self._client: Minio | None = None
        self._http: urllib3.PoolManager | None = None
        self._lock = threading.Lock()
        self.list_calls = 0
        """How many listings ran (one per ``list_keys`` call): retention must list only at start-up."""

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Check the settings against the server and create the bucket if missing. Raises StoreError."""
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
        try:
            if not client.bucket_exists(conf.bucket):
                try:
                    client.make_bucket(conf.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        except S3Error as exc:
            http.clear()
            raise self._connect_error(exc) from None
        except MinioException as exc:  # an HTTP server that does not speak S3, or a 5xx
            http.clear()
            raise StoreError(
                f"the server at {self._url()} does not answer like S3 ({str(exc)[:120]}) - check {_SETTING}.endpoint"
            ) from None
        except _NETWORK_ERRORS as exc:
            http.clear()
            raise StoreError(
                f"cannot reach the S3 endpoint {self._url()} ({_reason(exc)}) - check {_SETTING}.endpoint "
                f"and {_SETTING}.use_ssl, and that the server runs"
            ) from None
        self._http, self._client = http, client

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

    # --- Store -----------------------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        client = self._connected()
        try:
            client.put_object(self.conf.bucket, self._full(key), io.BytesIO(data), len(data), content_type=content_type)
        except (MinioException, *_NETWORK_ERRORS) as exc:
            raise self._op_error("store", key, exc) from None

    def get(self, key: str) -> bytes:
        client = self._connected()
        response = None
        try:
            response = client.get_object(self.conf.bucket, self._full(key))
            return response.read()
        except (MinioException, *_NETWORK_ERRORS) as exc:
            raise self._op_error("read", key, exc) from None
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Deletes in requests of up to 1000 keys; returns the keys not deleted (a key already gone counts as deleted)."""
        client = self._connected()
        failed: list[str] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            by_full = {self._full(k): k for k in batch}
            try:
                errors = client.remove_objects(self.conf.bucket, [DeleteObject(k) for k in by_full])
                failed.extend(by_full.get(err.name, err.name) for err in errors)
            except (MinioException, *_NETWORK_ERRORS):
                failed.extend(batch)
        return failed

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys under the directory ``prefix`` (like ``LocalStore``: ``a/b`` lists ``a/b/...``, not ``a/bc``), in
        lexicographic order, fetched one page (1000 keys) at a time as the caller iterates."""
        client = self._connected()
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

    def _op_error(self, verb: str, key: str, exc: BaseException) -> StoreError:
        if isinstance(exc, S3Error):
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


def _reason(exc: BaseException) -> str:
    """The innermost cause of a urllib3 error, short (``Connection refused``, ``timed out``...)."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return text.split(">: ", 1)[-1] if " object at 0x" in text else text
