"""Drop-in replacement: a site's whole config.toml (the media server's sections and the plug-ins') loads and runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from framewatch.actors.core.config import ConfigError, decode_config, load_config

ROOT = Path(__file__).resolve().parent.parent
OLD_SITE = ROOT / "tests" / "data" / "old_media_server_config.toml"

MEDIA_SERVER = (
    "not used by framewatch: [base], [baselog], [data], [defaulthttpconfig], [gopcacheconfig], [hlsconfig], "
    "[httpapiconfig], [httpflvconfig], [httpfmp4config], [httptsconfig], [insessionconfig], [lalconfig], [logconfig], "
    "[recordconfig], [relaypush], [roomconfig], [rtcconfig], [rtmpconfig], [rtspconfig], [srtconfig], "
    "[staticrelaypull], [storage], [vodconfig], daemonaddr, lanip, serverid, wanip"
)
IGNORED = [
    "ai_analysis.scan_interval_sec is ignored: framewatch does not scan storage for work",
    "ai_analysis.alert_image_move_concurrent is ignored: framewatch stores alert images directly, it moves no frames",
]
TASK = "[[frame_extractor.tasks]]\nid = 'cam-1'\ntask_type = '人数统计'\nrtsp_url = 'synthetic://a'\n"


def old_site() -> str:
    return OLD_SITE.read_text(encoding="utf-8")


def with_line_after(anchor: str, line: str) -> str:
    """The site's file with ``line`` added after the first line that is ``anchor``."""
    text = old_site()
    assert f"\n{anchor}\n" in text, anchor
    return text.replace(f"\n{anchor}\n", f"\n{anchor}\n{line}\n", 1)


#: What only the site has, and its stand-in here: frames on disk instead of MinIO, alerts in JSON Lines, not Kafka.
LOCAL_STAND_INS = [
    ("store = 'minio'", "store = 'local'"),
    ("endpoint = '172.16.5.207:9000'", "endpoint = '127.0.0.1:9000'"),
    ("mq_type = 'kafka'", "mq_type = 'jsonl'"),
    ("mq_address = '172.16.5.207:9092'", "mq_address = '127.0.0.1:9092'"),
]


def on_this_machine(text: str) -> str:
    """The same file with the site's MinIO, Kafka and cameras replaced by local stand-ins (the shipped clip)."""
    for old, new in LOCAL_STAND_INS:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    text, cameras = re.subn(r"^rtsp_url = '[^']*'$", "rtsp_url = 'asset:vtest_5s.mp4'", text, flags=re.MULTILINE)
    assert cameras == 4
    return text


def test_the_sites_whole_file_passes_check_with_one_notice_naming_the_media_servers_tables():
    proc = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "check", str(OLD_SITE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    notices = [line for line in proc.stdout.splitlines() if line.startswith("notice: ")]
    assert notices == [f"notice: {text}" for text in [MEDIA_SERVER, *IGNORED]]
    assert proc.stdout.endswith(f"{OLD_SITE}: OK (3 tasks enabled)\n")


def test_every_old_key_keeps_its_old_meaning():
    loaded = load_config(OLD_SITE)
    cfg = loaded.config
    gate, turnstile, store_room, smoking = cfg.frame_extractor.tasks
    assert (cfg.frame_extractor.store, cfg.frame_extractor.minio.bucket, cfg.ai_analysis.mq_topic) == (
        "minio", "images", "easyai.alerts")
    assert [t.id for t in cfg.enabled_tasks()] == ["大门入口", "通道闸机", "仓库禁区"] and not smoking.enabled
    assert [cfg.task_interval_ms(t) for t in (gate, turnstile, store_room)] == [500, 200, 1000]
    assert [cfg.task_max_frame_count(t) for t in (gate, turnstile, store_room)] == [500, 2000, 1000]
    assert gate.output_path == "大门入口"
    # the pin (a tripwire task's frames go to its own service only), and the web console's informational keys
    assert turnstile.preferred_algorithm_endpoint == "http://172.16.5.211:8001/infer"
    assert gate.preferred_algorithm_endpoint is None
    assert [t.config_status for t in (gate, store_room, smoking)] == ["configured", "unconfigured", None]
    assert (gate.preview_image, store_room.preview_image) == ("人数统计/大门入口/preview.jpg", "")
    # save_alert_image: set per task, or unset = stored (the old system had no global switch)
    assert [t.save_alert_image for t in (gate, turnstile, store_room)] == [True, None, False]
    assert [cfg.task_save_alert_image(t) for t in (gate, turnstile, store_room)] == [True, True, False]
    ai = cfg.ai_analysis
    assert (ai.max_alerts_in_db, ai.alert_image_move_concurrent, ai.scan_interval_sec) == (1000, 50, 1.0)
    assert (ai.save_only_with_detection, ai.alert_base_path, ai.alert_batch_size) == (True, "alerts/", 100)
    assert loaded.notices == [MEDIA_SERVER, *IGNORED]


@pytest.mark.parametrize(("anchor", "line", "error"), [
    ("save_alert_image = true", "fsp = 3", "Object contains unknown field `fsp` - at `$.frame_extractor.tasks[0]`"),
    ("base_path = ''", "region = 'cn-north-1'",
     "Object contains unknown field `region` - at `$.frame_extractor.minio`"),
    ("max_frame_count = 1000", "max_frame_cout = 10",
     "Object contains unknown field `max_frame_cout` - at `$.frame_extractor`"),
    ("max_alerts_in_db = 1000", "max_alert_in_db = 10",
     "Object contains unknown field `max_alert_in_db` - at `$.ai_analysis`"),
])
def test_an_unknown_key_inside_a_framewatch_table_is_still_an_error_with_its_path(anchor, line, error):
    with pytest.raises(ConfigError) as info:
        decode_config(with_line_after(anchor, line))
    assert str(info.value) == error


def test_a_wrong_old_key_is_an_error_at_its_path():
    with pytest.raises(ConfigError) as info:
        decode_config(old_site().replace("config_status = 'unconfigured'", "config_status = 'pending'"))
    assert str(info.value) == "Invalid enum value 'pending' - at `$.frame_extractor.tasks[2].config_status`"


def test_an_unknown_top_level_key_or_table_is_a_notice_not_an_error():
    text = "site = 'north'\n[rtspconfig]\naddr = ':554'\n[[relays]]\nurl = 'rtmp://relay/live'\n" + TASK
    loaded = decode_config(text)
    assert loaded.notices == ["not used by framewatch: [[relays]], [rtspconfig], site"]
    assert [t.id for t in loaded.config.enabled_tasks()] == ["cam-1"]


def test_a_table_named_almost_like_framewatchs_is_named_with_the_likely_table():
    loaded = decode_config("[alert]\nkeep_files = 3\n[ai-analysis]\nmq_type = 'jsonl'\n" + TASK)
    assert loaded.notices[0] == ("not used by framewatch: [ai-analysis] (is it [ai_analysis]?), "
                                 "[alert] (is it [alerts]?)")
    assert loaded.config.alerts.keep_files == 5  # not applied: the notice is what tells


def test_the_same_file_runs_on_this_machine_and_infers(tmp_path):
    conf = tmp_path / "config.toml"
    conf.write_text(on_this_machine(old_site()), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "run", str(conf), "--duration", "5"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).count("not used by framewatch") == 1  # once, at start
    stats = json.loads((tmp_path / "data" / "stats.json").read_text(encoding="utf-8"))  # [stats] path's default
    assert stats["totals"]["inferred"] > 0 and stats["cameras"]["大门入口"]["inferred"] > 0
    assert stats["cameras"]["通道闸机"]["inferred"] == 0  # pinned to a service that is not there
    assert stats["cameras"]["通道闸机"]["waiting"] == "waiting for preferred service http://172.16.5.211:8001/infer"
    # save_alert_image = false: that task's alerts go out, without an image; the others keep theirs.
    rows = [json.loads(line) for line in (tmp_path / "data" / "alerts.jsonl").read_text().splitlines()]
    events = [r for r in rows if r["rule"] != "count_report"]  # people counting's periodic reports carry no image
    assert {(r["task_id"], r["image_stored"]) for r in events} <= {("大门入口", True), ("仓库禁区", False)}
    assert any(r["task_id"] == "仓库禁区" for r in rows)
    assert not (tmp_path / "snapshots" / "alerts" / "区域入侵" / "仓库禁区").exists()
    assert any((tmp_path / "snapshots" / "alerts" / "人数统计" / "大门入口").iterdir())
