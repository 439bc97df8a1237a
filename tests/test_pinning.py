"""preferred_algorithm_endpoint: a pinned task's frames go only to the service registered with that endpoint; while
it is away they are skipped with a visible reason, never sent elsewhere; they resume when it registers."""

from __future__ import annotations

import subprocess

import pytest
from framewatch.actors.core.config import decode_config
from framewatch.actors.inference import service as algo_service
from framewatch.actors.system import Running

from tests.servers import free_port
from tests.test_algorithms import SMOKING, TOKEN, conf
from tests.waiting import assert_conserved, wait_for


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def start_service(procs, register: str, sid: str, port: int) -> None:
    argv = algo_service.command(register, service_id=sid, task_types=[SMOKING], port=port, name=sid,
                                detector="noop", latency_ms=20, token=TOKEN, log_level="warning")
    procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def test_a_pinned_task_waits_for_its_service_and_then_only_it_infers_the_tasks_frames(tmp_path, procs):
    pinned_port = free_port()
    endpoint = f"http://127.0.0.1:{pinned_port}/infer"
    text = conf(tmp_path, cameras=2).replace(
        'id = "cam-1"\n', f'id = "cam-1"\npreferred_algorithm_endpoint = "{endpoint}/"\n')  # a trailing / is the same
    with Running(decode_config(text)) as fw:
        start_service(procs, fw.http_url, "other", free_port())
        away = wait_for(lambda: (s := fw.snapshot()).cameras["cam-0"].inferred >= 20 and s, 30,
                        "the unpinned camera inferred by the other service")
        assert away.cameras["cam-1"].inferred == 0 and away.cameras["cam-1"].failed == 0
        assert away.cameras["cam-1"].skipped > 0
        assert away.cameras["cam-1"].waiting == f"waiting for preferred service {endpoint}"
        assert away.cameras["cam-0"].waiting == ""

        start_service(procs, fw.http_url, "preferred", pinned_port)
        back = wait_for(lambda: (s := fw.snapshot()).cameras["cam-1"].inferred >= 20 and s, 30,
                        "the pinned camera inferred once its service registered")
        assert back.cameras["cam-1"].waiting == ""
        assert_conserved(back)
    final = fw.final
    assert_conserved(final, at_rest=True)
    done = {sid: s.completed for sid, s in final.services.items()}
    cams = final.cameras
    assert done["other"] + done["preferred"] == final.totals.inferred
    # The other service never got a frame of the pinned camera: everything it did was the unpinned camera's.
    assert done["other"] <= cams["cam-0"].inferred
    assert done["preferred"] >= cams["cam-1"].inferred
