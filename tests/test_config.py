"""Configuration: the old system's file loads; every mistake is named by its key path and exits with code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from framewatch.actors.core.config import SAFE_MAX_FRAME_COUNT, ConfigError, decode_config, load_config

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "data" / "seed_config.toml"

TASK = "[[frame_extractor.tasks]]\nid = 'cam-1'\ntask_type = '人数统计'\nrtsp_url = 'synthetic://a'\n"


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
    for conf in [SEED, *sorted((ROOT / "conf").glob("*.toml"))]:
        proc = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "check", str(conf)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (conf, proc.stderr)
        assert ": OK (" in proc.stdout
