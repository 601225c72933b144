"""JupyterLab, as `make lab` starts it, serves the series and runs code through a kernel.

The server is started with the Makefile's ``lab`` command plus a free port, a token and no
browser, with every Jupyter and IPython folder (config, data, runtime, HOME) in a temporary
directory, so nothing of the user's is read or written. The test reads ``/lab`` and the
notebook listing, starts a kernel through the REST API, executes code (``import ipywidgets``
and a widget) through the kernel's websocket, and shuts everything down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 60
CODE = """import ipywidgets as w
s = w.IntSlider(value=7, min=0, max=10)
display(s)
print(s.value * 6, type(s).__name__, w.__version__)"""


def make_lab_command() -> list[str]:
    """The command of the Makefile's ``lab`` target, with this interpreter."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    recipe = lines[lines.index("lab: setup") + 1].strip()
    assert recipe.startswith("$(PY) -m jupyterlab") and "--ip=127.0.0.1" in recipe, recipe
    return [sys.executable, *recipe.split()[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, port: int, token: str, proc: subprocess.Popen) -> None:
        self.base, self.token, self.proc = f"http://127.0.0.1:{port}", token, proc

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "IPYTHONDIR": str(home / "ipython"), "XDG_CONFIG_HOME": str(home / "xdg"),
           "XDG_CACHE_HOME": str(home / "cache"), "JUPYTER_NO_CONFIG": "1"}
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [*make_lab_command(), "--no-browser", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           "--LabApp.extension_manager=readonly"]  # no PyPI look-ups
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=ROOT)
    server = Lab(port, token, proc)
    try:
        deadline = time.time() + STARTUP_S
        while True:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            with contextlib.suppress(OSError):
                if server.request("GET", "/api/status")[0] == 200:
                    break
            assert time.time() < deadline, "JupyterLab did not start in time"
            time.sleep(0.3)
        # the server's runtime files are in the temporary folder, not the user's
        assert list((home / "runtime").glob(f"jpserver-{proc.pid}*"))
        yield server
        status, _ = server.request("POST", "/api/shutdown")
        assert status in (200, 204)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


async def _execute(lab: Lab, kernel_id: str, code: str) -> dict:
    """Send ``code`` over the kernel websocket; collect what comes back until idle."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = lab.base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers={
        "Authorization": f"token {lab.token}"}))
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": session,
                   "date": datetime.now(timezone.utc).isoformat(),
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    got: dict = {"stdout": "", "displays": [], "comms": [], "errors": [], "reply": None}
    idle = False
    while not (idle and got["reply"]):
        msg = json.loads(await ws.read_message())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            got["stdout"] += content["text"]
        elif kind == "display_data":
            got["displays"].append(content["data"])
        elif kind == "comm_open":
            got["comms"].append(content)
        elif kind == "error":
            got["errors"].append(f"{content['ename']}: {content['evalue']}")
        elif kind == "execute_reply":
            got["reply"] = content
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    ws.close()
    return got


def test_lab_serves_the_workbook_and_runs_a_widget_through_a_kernel(lab):
    status, page = lab.request("GET", "/lab")
    assert status == 200 and b"JupyterLab" in page
    status, body = lab.request("GET", "/api/contents")  # the series, as make lab opens it
    listed = {item["name"] for item in json.loads(body)["content"]}
    assert status == 200 and listed == {p.name for p in (ROOT / "notebooks").iterdir()
                                        if not p.name.startswith(".")}
    assert "00_how_to_use_this_workbook.ipynb" in listed
    status, body = lab.request("POST", "/api/kernels", {"name": "python3"})
    assert status == 201, body
    kernel_id = json.loads(body)["id"]
    got = asyncio.run(asyncio.wait_for(_execute(lab, kernel_id, CODE), 60))
    assert got["errors"] == [] and got["reply"]["status"] == "ok"
    import ipywidgets

    assert got["stdout"].split() == ["42", "IntSlider", ipywidgets.__version__]
    widgets = [c for c in got["comms"] if c["target_name"] == "jupyter.widget"]
    views = [d["application/vnd.jupyter.widget-view+json"]["model_id"] for d in got["displays"]
             if "application/vnd.jupyter.widget-view+json" in d]
    assert views and views[0] in {c["comm_id"] for c in widgets}
    slider = next(c for c in widgets if c["comm_id"] == views[0])
    assert slider["data"]["state"]["_model_name"] == "IntSliderModel"
    assert slider["data"]["state"]["value"] == 7
    status, _ = lab.request("DELETE", f"/api/kernels/{kernel_id}")
    assert status == 204
    status, body = lab.request("GET", "/api/kernels")
    assert status == 200 and json.loads(body) == []
