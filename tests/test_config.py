"""Configuration: the old system's file loads; every mistake is named by its key path and exits with code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from framewatch.actors.core.config import SAFE_MAX_FRAME_COUNT, Config, ConfigError, decode_config, load_config
from framewatch.actors.core.urls import SyntheticParams, parse_synthetic

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "data" / "seed_config.toml"

TASK = "[[frame_extractor.tasks]]\nid = 'cam-1'\ntask_type = '人数统计'\nrtsp_url = 'synthetic://a'\n"
S3_KEYS_IN_ENV = {"FRAMEWATCH_MINIO_ACCESS_KEY": "env-access", "FRAMEWATCH_MINIO_SECRET_KEY": "env-secret"}


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        decode_config(text)
    return str(info.value)


def test_the_old_systems_example_config_loads_with_its_meanings():
    loaded = load_config(SEED)
    cfg = loaded.config
    task = cfg.frame_extractor.tasks[0]
    assert cfg.frame_extractor.store == "minio"
    assert cfg.frame_extractor.minio.endpoint == "172.16.5.207:9000"
    assert cfg.task_interval_ms(task) == 200
    assert cfg.task_max_frame_count(task) == 500
    assert cfg.ai_analysis.mq_topic == "easyai.alerts"
    assert cfg.ai_analysis.save_only_with_detection is True
    assert loaded.notices == ["ai_analysis.scan_interval_sec is ignored: framewatch does not scan storage for work"]


def test_an_unset_max_frame_count_is_a_safe_bound_and_zero_is_unlimited_with_a_warning():
    cfg = decode_config(TASK).config
    assert cfg.task_max_frame_count(cfg.frame_extractor.tasks[0]) == SAFE_MAX_FRAME_COUNT == 1000
    loaded = decode_config("[frame_extractor]\nmax_frame_count = 0\n" + TASK)
    assert loaded.config.task_max_frame_count(loaded.config.frame_extractor.tasks[0]) == 0
    assert "task 'cam-1': max_frame_count = 0 means unlimited storage; frames will pile up" in loaded.notices


def test_a_wrong_type_names_the_key_path():
    assert error_of("[frame_extractor]\ninterval_ms = 'fast'\n") == (
        "Expected `int`, got `str` - at `$.frame_extractor.interval_ms`"
    )


def test_an_unknown_key_names_the_table_it_is_in():
    assert error_of(TASK + "fsp = 3\n") == "Object contains unknown field `fsp` - at `$.frame_extractor.tasks[0]`"


def test_a_missing_key_names_the_table_it_is_missing_from():
    assert error_of("[[frame_extractor.tasks]]\nid = 'a'\ntask_type = '人数统计'\n") == (
        "Object missing required field `rtsp_url` - at `$.frame_extractor.tasks[0]`"
    )


def test_an_out_of_range_value_names_the_key_path_and_the_bound():
    assert error_of(TASK + TASK.replace("cam-1", "cam-2") + "interval_ms = 0\n") == (
        "Expected `int` >= 1 - at `$.frame_extractor.tasks[1].interval_ms`"
    )


def test_cross_field_and_task_type_errors_name_their_paths():
    assert error_of("[backpressure]\nhigh_watermark = 2\nlow_watermark = 2\n") == (
        "low_watermark (2) must be below high_watermark (2) - at `$.backpressure`"
    )
    assert error_of(TASK + TASK) == (
        "Duplicate task id 'cam-1' (also at $.frame_extractor.tasks[0]) - at `$.frame_extractor.tasks[1].id`"
    )
    assert error_of(TASK.replace("人数统计", "跳舞")).endswith("- at `$.frame_extractor.tasks[0].task_type`")
    assert error_of(TASK + "algo_config = { count_treshold = 3 }\n") == (
        "Object contains unknown field `count_treshold` - at `$.frame_extractor.tasks[0].algo_config`"
    )
    assert error_of(TASK.replace("人数统计", "区域入侵") + "algo_config = { roi = [[0, 0], [1, 0]] }\n") == (
        "Expected `array` of length >= 3 - at `$.frame_extractor.tasks[0].algo_config.roi`"
    )


def test_secrets_come_from_the_environment_and_never_show_in_repr(monkeypatch):
    monkeypatch.setenv("FRAMEWATCH_MINIO_ACCESS_KEY", "env-access")
    monkeypatch.setenv("FRAMEWATCH_MINIO_SECRET_KEY", "env-secret-value")
    minio = load_config(SEED).config.frame_extractor.minio
    assert (minio.access_key, minio.secret_key) == ("env-access", "env-secret-value")
    assert "env-secret-value" not in repr(minio) and "admin123" not in repr(minio)


@pytest.mark.parametrize("command", [["check"], ["run"], []])
def test_the_cli_exits_with_code_2_and_the_key_path_on_a_bad_conf(tmp_path, command):
    bad = tmp_path / "bad.toml"
    bad.write_text(TASK + "interval_ms = -5\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "supervisor.py"), *command, str(bad)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Expected `int` >= 1 - at `$.frame_extractor.tasks[0].interval_ms`" in proc.stderr


def test_check_accepts_the_seed_and_the_shipped_confs():
    env = {**os.environ, **S3_KEYS_IN_ENV}  # conf/edge.toml leaves its MinIO keys to the environment, as documented
    for conf in [SEED, *sorted((ROOT / "conf").glob("*.toml"))]:
        proc = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "check", str(conf)],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, (conf, proc.stderr)
        assert ": OK (" in proc.stdout


# --- what cannot work is refused at decode time ---------------------------------------------------------------------

SHIPPED = "nanodet-coco-416.onnx, ssdlite_person.config, ssdlite_person.pb, ssdlite_person.pbtxt, vtest_5s.mp4"
SOURCE_KINDS = "rtsp://, rtsps://, rtmp://, http://, https://, synthetic://, asset:NAME or a file path"
MINIO = "[frame_extractor]\nstore = 'minio'\n[frame_extractor.minio]\n"
MINIO_OK = {"endpoint": "127.0.0.1:9000", "bucket": "images", "access_key": "a", "secret_key": "s"}


def second_task(url: str, *, enabled: bool = True) -> str:
    """A valid first task, then one reading ``url``: the error must name index 1."""
    second = TASK.replace("cam-1", "cam-2").replace("'synthetic://a'", repr(url))
    return TASK + second + ("" if enabled else "enabled = false\n")


def minio_conf(**overrides: str) -> str:
    keys = {**MINIO_OK, **overrides}
    return MINIO + "".join(f"{key} = {value!r}\n" for key, value in keys.items()) + TASK


@pytest.fixture
def no_s3_keys_in_env(monkeypatch):
    for variable in S3_KEYS_IN_ENV:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(("url", "reason"), [
    ("htp://not a url::", f"bad camera URL 'htp://not a url::': unknown scheme 'htp'; use {SOURCE_KINDS}"),
    ("rtsp://", "bad camera URL 'rtsp://': no host; write rtsp://HOST[:PORT]/PATH"),
    ("rtsps://:322/live", "bad camera URL 'rtsps://:322/live': no host; write rtsps://HOST[:PORT]/PATH"),
    ("rtsp://cam 1/stream",
     "bad camera URL 'rtsp://cam 1/stream': contains whitespace; remove it or percent-encode it (%20)"),
    ("rtsp://cam:abc/stream", "bad camera URL 'rtsp://cam:abc/stream': bad port 'abc'; use a number from 1 to 65535"),
    ("rtsp://cam:70000/stream",
     "bad camera URL 'rtsp://cam:70000/stream': bad port '70000'; use a number from 1 to 65535"),
    ("RTSP://cam/stream", "bad camera URL 'RTSP://cam/stream': write the scheme in lowercase (rtsp://)"),
    ("file:///videos/clip.mp4",
     "bad camera URL 'file:///videos/clip.mp4': file:// URLs are not read; "
     "write the file's path itself (/videos/clip.mp4)"),
])
def test_a_malformed_camera_url_or_an_unknown_scheme_is_refused_with_the_fix(url, reason):
    assert error_of(second_task(url)) == f"{reason} - at `$.frame_extractor.tasks[1].rtsp_url`"


def test_a_disabled_tasks_url_is_checked_too_since_it_may_be_enabled_at_run_time():
    assert error_of(second_task("rtsp://", enabled=False)) == (
        "bad camera URL 'rtsp://': no host; write rtsp://HOST[:PORT]/PATH - at `$.frame_extractor.tasks[1].rtsp_url`"
    )


def test_a_missing_file_is_refused_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert error_of(second_task("clips/door.mp4")) == (
        f"no such file 'clips/door.mp4' (relative paths start at the working directory, {tmp_path}); give an existing "
        "video file, or use asset:NAME, rtsp://HOST/PATH or synthetic://NAME - at `$.frame_extractor.tasks[1].rtsp_url`"
    )
    assert error_of(second_task("/nonexistent/door.mp4")) == (
        "no such file '/nonexistent/door.mp4'; give an existing video file, or use asset:NAME, rtsp://HOST/PATH or "
        "synthetic://NAME - at `$.frame_extractor.tasks[1].rtsp_url`"
    )
    assert error_of(second_task(str(tmp_path))) == (
        f"{str(tmp_path)!r} is a directory; give the path of a video file - at `$.frame_extractor.tasks[1].rtsp_url`"
    )
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "door.mp4").write_bytes(b"")
    assert decode_config(second_task("clips/door.mp4")).config.frame_extractor.tasks[1].rtsp_url == "clips/door.mp4"


def test_an_unknown_asset_is_refused_listing_the_shipped_assets():
    assert error_of(second_task("asset:vtest.mp4")) == (
        f"unknown asset 'vtest.mp4'; asset:NAME names a file shipped in actors/assets: {SHIPPED} "
        "- at `$.frame_extractor.tasks[1].rtsp_url`"
    )


@pytest.mark.parametrize(("query", "reason"), [
    ("fps=many", "fps must be a number above 0 and at most 1000, got 'many'"),
    ("fps=0", "fps must be a number above 0 and at most 1000, got '0'"),
    ("fps=1001", "fps must be a number above 0 and at most 1000, got '1001'"),
    ("width=8", "width must be an integer from 16 to 8192, got '8'"),
    ("height=9000", "height must be an integer from 16 to 8192, got '9000'"),
    ("width=16.5", "width must be an integer from 16 to 8192, got '16.5'"),
    ("shapes=65", "shapes must be an integer from 0 to 64, got '65'"),
    ("fail_open=maybe", "fail_open must be 0 or 1, got 'maybe'"),
    ("fsp=25", "unknown parameter 'fsp'; the parameters are width, height, fps, shapes, fail_open"),
    ("fps=10&fps=20", "fps is given twice; keep one"),
])
def test_bad_synthetic_parameters_are_refused_naming_the_parameter_and_its_range(query, reason):
    url = f"synthetic://cam-2?{query}"
    assert error_of(second_task(url)) == (
        f"bad synthetic source {url!r}: {reason} - at `$.frame_extractor.tasks[1].rtsp_url`"
    )


def test_parse_synthetic_is_the_one_parser_of_synthetic_urls_with_the_sources_defaults():
    assert parse_synthetic("synthetic://cam-1?width=160&height=120&fps=20&shapes=0&fail_open=1") == SyntheticParams(
        name="cam-1", width=160, height=120, fps=20.0, shapes=0, fail_open=True
    )
    assert parse_synthetic("synthetic://") == SyntheticParams(name="", width=640, height=360, fps=25.0, shapes=3)
    with pytest.raises(ValueError, match=r"^bad synthetic source 'rtsp://cam': it must start with synthetic://$"):
        parse_synthetic("rtsp://cam")


def test_the_sources_the_tests_and_confs_use_stay_valid(tmp_path):
    urls = ["synthetic://cam-1?width=160&height=120&fps=20", "synthetic://x?fps=10", "asset:vtest_5s.mp4",
            "rtsp://127.0.0.1:8554/cam0", "rtsp://user:pass@[::1]:554/stream1", "https://cam.local/video.mjpg",
            "rtmp://10.0.0.7/live/door",
            "rtsp://..."]  # the seed's placeholder: a host is never resolved, nor its syntax judged
    text = "".join(TASK.replace("cam-1", f"cam-{i}").replace("synthetic://a", url) for i, url in enumerate(urls))
    tasks = decode_config(text).config.frame_extractor.tasks
    assert [t.rtsp_url for t in tasks] == urls


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("bucket", "Images_Bad", "S3 refuses the bucket name 'Images_Bad': use 3-63 lowercase letters, digits, '.' or '-', "
                             "starting and ending with a letter or digit"),
    ("bucket", "10.0.0.1", "S3 refuses the bucket name '10.0.0.1' (bucket name 10.0.0.1 must not be formatted as an "
                           "IP address): use 3-63 lowercase letters, digits, '.' or '-', starting and ending with a "
                           "letter or digit"),
    ("endpoint", "http://host:9000", "bad endpoint 'http://host:9000': no scheme allowed; write host:port only "
                                     "('host:9000') and set use_ssl = true for https"),
    ("endpoint", "host:9000/x", "bad endpoint 'host:9000/x': no path allowed; write host:port only ('host:9000') and "
                                "put a key prefix in base_path"),
    ("endpoint", "host", "bad endpoint 'host': no port; write host:port, e.g. 'host:9000'"),
    ("endpoint", "host:90o0", "bad endpoint 'host:90o0': bad port '90o0'; use a number from 1 to 65535"),
    ("endpoint", ":9000", "bad endpoint ':9000': no host; write host:port, e.g. '127.0.0.1:9000'"),
    ("access_key", "", "store = 'minio' needs an S3 access key: set frame_extractor.minio.access_key or the "
                       "environment variable FRAMEWATCH_MINIO_ACCESS_KEY"),
    ("secret_key", "", "store = 'minio' needs an S3 secret key: set frame_extractor.minio.secret_key or the "
                       "environment variable FRAMEWATCH_MINIO_SECRET_KEY"),
])
def test_a_minio_setting_s3_would_refuse_is_refused_at_its_key(no_s3_keys_in_env, key, value, reason):
    assert error_of(minio_conf(**{key: value})) == f"{reason} - at `$.frame_extractor.minio.{key}`"


def test_minio_keys_from_the_environment_count_as_given(no_s3_keys_in_env, monkeypatch):
    text = minio_conf(access_key="", secret_key="")
    assert error_of(text).endswith("- at `$.frame_extractor.minio.access_key`")
    monkeypatch.setenv("FRAMEWATCH_MINIO_ACCESS_KEY", "env-access")
    assert error_of(text).endswith("FRAMEWATCH_MINIO_SECRET_KEY - at `$.frame_extractor.minio.secret_key`")
    monkeypatch.setenv("FRAMEWATCH_MINIO_SECRET_KEY", "env-secret")
    minio = decode_config(text).config.frame_extractor.minio
    assert (minio.access_key, minio.secret_key) == ("env-access", "env-secret")


def test_with_store_local_the_minio_table_is_not_checked(no_s3_keys_in_env):
    text = minio_conf(bucket="Images_Bad", endpoint="http://host", access_key="").replace("'minio'", "'local'", 1)
    assert decode_config(text).config.frame_extractor.minio.bucket == "Images_Bad"


NO_TASK = ("no enabled task: framewatch will run but extract nothing "
           "(add tasks to frame_extractor.tasks, or enable one)")


def test_a_conf_with_no_enabled_task_loads_with_a_notice():
    assert decode_config("").notices == [NO_TASK]
    assert decode_config(TASK + "enabled = false\n").notices == [NO_TASK]
    assert NO_TASK not in decode_config(TASK).notices
    disabled = decode_config("[frame_extractor]\nenable = false\n").notices
    assert disabled == ["frame_extractor.enable = false: no task runs"]  # already said; not said twice


# --- the old system's keys and its whole file ----------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    TASK + "fsp = 3\n",
    TASK + "interval_ms = 1979-05-27\n",
    "[frame_extractor]\nscan_interval_sec = 1979-05-27T07:32:00Z\n",
    "http = 3\n",
    "[frame_extractor]\ntasks = {}\n",
    "[backpressure]\nlow_watermark = 5\n",
    TASK + "config_status = 'maybe'\n",
])
def test_framewatchs_tables_are_decoded_exactly_as_a_strict_decode_of_the_whole_file_would(text):
    with pytest.raises(msgspec.ValidationError) as strict:
        msgspec.toml.decode(text, type=Config)
    assert error_of(text) == error_of("lanip = ''\n" + text + "\n[rtspconfig]\naddr = ':554'\n") == str(strict.value)


def test_the_old_task_keys_load_and_an_unset_save_alert_image_means_stored():
    text = TASK + ("preferred_algorithm_endpoint = 'http://10.0.0.5:8000/infer'\nconfig_status = 'configured'\n"
                   "preview_image = 'previews/cam-1.jpg'\nsave_alert_image = false\n") + TASK.replace("cam-1", "cam-2")
    cfg = decode_config(text).config
    pinned, plain = cfg.frame_extractor.tasks
    assert (pinned.preferred_algorithm_endpoint, pinned.config_status, pinned.preview_image) == (
        "http://10.0.0.5:8000/infer", "configured", "previews/cam-1.jpg")
    assert (plain.preferred_algorithm_endpoint, plain.config_status, plain.preview_image) == (None, None, None)
    assert (cfg.task_save_alert_image(pinned), plain.save_alert_image, cfg.task_save_alert_image(plain)) == (
        False, None, True)


NOT_HTTP = "not an http:// or https:// URL; write the endpoint the service registers with, http://HOST[:PORT]/PATH"


@pytest.mark.parametrize(("endpoint", "reason"), [
    ("10.0.0.5:8000/infer", NOT_HTTP),
    ("", NOT_HTTP),
    ("rtsp://10.0.0.5/infer", NOT_HTTP),
    ("HTTP://10.0.0.5/infer", NOT_HTTP),
    ("http:///infer", "no host; write http://HOST[:PORT]/PATH"),
    ("https://algo:80a/infer", "bad port '80a'; use a number from 1 to 65535"),
    ("http://algo host:8000/infer", "contains whitespace; remove it"),
])
def test_a_preferred_algorithm_endpoint_that_is_not_an_http_url_with_a_host_is_refused(endpoint, reason):
    text = second_task("synthetic://b", enabled=False) + f"preferred_algorithm_endpoint = {endpoint!r}\n"
    where = "$.frame_extractor.tasks[1].preferred_algorithm_endpoint"
    assert error_of(text) == f"bad algorithm service endpoint {endpoint!r}: {reason} - at `{where}`"


def test_the_old_ai_analysis_keys_are_accepted_with_their_defaults_and_notices():
    ai = decode_config(TASK).config.ai_analysis
    assert (ai.max_alerts_in_db, ai.alert_image_move_concurrent) == (1000, None)
    loaded = decode_config("[ai_analysis]\nalert_image_move_concurrent = 50\nmax_alerts_in_db = 0\n" + TASK)
    assert loaded.notices == [
        "ai_analysis.alert_image_move_concurrent is ignored: framewatch stores alert images directly, "
        "it moves no frames",
        "ai_analysis.max_alerts_in_db = 0 means an unlimited alert history; alert rows will pile up",
    ]
    assert error_of("[ai_analysis]\nmax_alerts_in_db = -1\n") == (
        "Expected `int` >= 0 - at `$.ai_analysis.max_alerts_in_db`"
    )


def test_tables_and_keys_that_are_not_framewatchs_are_named_once_tables_first():
    loaded = decode_config("serverid = 'local'\nlanip = ''\n[vodconfig]\nhlstime = 8\n[base]\ntimeout = 0\n" + TASK)
    assert loaded.notices == ["not used by framewatch: [base], [vodconfig], lanip, serverid"]
