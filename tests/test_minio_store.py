"""MinioStore against a real S3 server (SeaweedFS from ``.ci/servers.sh start``); no mocks."""

from __future__ import annotations

import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from framewatch.actors.storage.minio import MinioStore
from framewatch.actors.storage.store import StoreError, frame_key

from tests.servers import SECRET_KEY, free_port, minio_conf, minio_store, raw_minio, remove_bucket, require_s3  # noqa: F401

ERROR_DEADLINE_SEC = 10.0


def test_a_stored_object_reads_back_with_the_same_bytes_under_the_base_path(minio_store: MinioStore) -> None:
    data = bytes(range(256)) * 40
    minio_store.put("people_counting/cam-01/a.jpg", data)

    assert minio_store.get("people_counting/cam-01/a.jpg") == data
    raw = raw_minio().get_object(minio_store.conf.bucket, "fw/people_counting/cam-01/a.jpg")
    try:
        assert raw.read() == data
        assert raw.headers["Content-Type"] == "image/jpeg"
    finally:
        raw.close()
        raw.release_conn()


def test_reading_a_missing_key_raises_store_error_naming_the_key(minio_store: MinioStore) -> None:
    with pytest.raises(StoreError, match="nothing/here.jpg"):
        minio_store.get("nothing/here.jpg")


def test_keys_are_listed_in_lexicographic_order_under_a_directory_prefix(minio_store: MinioStore) -> None:
    wall = 1_764_000_000.0
    keys = [frame_key("t/cam-1", wall + i * 0.25, i) for i in range(7)]
    for key in reversed(keys):
        minio_store.put(key, b"x")
    minio_store.put("t/cam-10/other.jpg", b"x")  # shares the string prefix "t/cam-1" but not the directory

    assert list(minio_store.list_keys("t/cam-1")) == keys
    assert list(minio_store.list_keys("t/cam-1/")) == keys
    assert list(minio_store.list_keys("t")) == [*keys, "t/cam-10/other.jpg"]
    assert list(minio_store.list_keys("nobody")) == []
    assert minio_store.list_calls == 4


def test_delete_many_removes_the_keys_and_a_missing_key_is_not_a_failure(minio_store: MinioStore) -> None:
    keys = [f"d/{i:04d}.jpg" for i in range(5)]
    for key in keys:
        minio_store.put(key, b"x")

    assert minio_store.delete_many([*keys[:3], "d/never-existed.jpg"]) == []
    assert list(minio_store.list_keys("d")) == keys[3:]
    assert minio_store.delete_many([]) == []


def test_a_presigned_url_lets_a_client_without_credentials_read_the_object(minio_store: MinioStore) -> None:
    minio_store.put("p/frame.jpg", b"\xff\xd8jpeg-bytes\xff\xd9")

    url = minio_store.presigned_url("p/frame.jpg", expires_sec=60)

    assert SECRET_KEY not in url
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == b"\xff\xd8jpeg-bytes\xff\xd9"


def test_listing_2500_objects_streams_them_page_by_page_in_order(minio_store: MinioStore) -> None:
    keys = [frame_key("big/cam", 1_764_000_000.0 + i / 10, i) for i in range(2500)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: minio_store.put(k, b"x"), keys))

    listing = minio_store.list_keys("big")
    first = next(listing)
    # Written after the first page was fetched: a listing read page by page still sees it on its last page,
    # one materialised at the first next() would not.
    late = "big/cam/zzzz-late.jpg"
    minio_store.put(late, b"x")
    rest = list(listing)

    assert [first, *rest] == [*keys, late]
    assert minio_store.list_calls == 1
    assert minio_store.delete_many([*keys, late]) == []  # 3 requests of <= 1000 keys
    assert list(minio_store.list_keys("big")) == []


def test_connect_creates_the_missing_bucket_and_the_constructor_does_no_io() -> None:
    require_s3()
    conf = minio_conf()
    store = MinioStore(conf)
    try:
        assert not raw_minio().bucket_exists(conf.bucket)
        with pytest.raises(StoreError, match=r"before connect\(\)"):
            store.put("a.jpg", b"x")
        store.connect()
        assert raw_minio().bucket_exists(conf.bucket)
        store.connect()  # an existing bucket is fine
    finally:
        store.close()
        remove_bucket(conf.bucket)


def _connect_error(conf) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    store = MinioStore(conf)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as info:
            store.connect()
    finally:
        store.close()
    return str(info.value), time.monotonic() - started


def test_a_wrong_secret_names_the_credential_settings_and_never_prints_the_secret() -> None:
    require_s3()
    wrong = "not-the-secret-4f1c9e"
    message, elapsed = _connect_error(minio_conf(secret_key=wrong))

    assert "frame_extractor.minio.access_key/secret_key" in message
    assert "SignatureDoesNotMatch" in message
    assert wrong not in message and SECRET_KEY not in message
    assert elapsed < ERROR_DEADLINE_SEC


def test_an_unknown_access_key_names_the_credential_settings() -> None:
    require_s3()
    message, elapsed = _connect_error(minio_conf(access_key="nobody-here"))

    assert "frame_extractor.minio.access_key/secret_key" in message
    assert elapsed < ERROR_DEADLINE_SEC


def test_an_invalid_bucket_name_names_the_bucket_setting() -> None:
    message, elapsed = _connect_error(minio_conf(bucket="Frames_Of_Cam1"))

    assert "'Frames_Of_Cam1'" in message and "frame_extractor.minio.bucket" in message
    assert elapsed < ERROR_DEADLINE_SEC


def test_an_endpoint_nobody_listens_on_names_the_endpoint_setting_quickly() -> None:
    port = free_port()
    message, elapsed = _connect_error(minio_conf(endpoint=f"127.0.0.1:{port}"))

    assert f"http://127.0.0.1:{port}" in message and "frame_extractor.minio.endpoint" in message
    assert "Connection refused" in message
    assert elapsed < ERROR_DEADLINE_SEC


def test_an_endpoint_that_accepts_but_never_answers_times_out_naming_the_endpoint_setting() -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        message, elapsed = _connect_error(minio_conf(endpoint=f"127.0.0.1:{port}", timeout_sec=1.0))

    assert "frame_extractor.minio.endpoint" in message
    assert "timed out" in message
    assert elapsed < ERROR_DEADLINE_SEC


def test_an_endpoint_with_a_scheme_names_the_endpoint_setting() -> None:
    message, elapsed = _connect_error(minio_conf(endpoint="http://127.0.0.1:9000"))

    assert "host:port without scheme" in message and "frame_extractor.minio.endpoint" in message
    assert elapsed < ERROR_DEADLINE_SEC
