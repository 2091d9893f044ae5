"""A student's way into the labs: ``make lab``, as the README shows it, run headless.

The test runs ``make lab`` with only headless options added (``JUPYTER_FLAGS``: no browser, a free
local port, a token), waits for JupyterLab, lists the student notebooks through its REST API (the
student versions, not the masters), opens Lab 1, starts a kernel through the server and runs the
notebook's cells up to its first ``grader.check(...)``: the check answers "not yet" (the exercise
is a stub), without an error before it. The server is then stopped.

Also here: the student notebooks show the book's MyST roles as plain Markdown, and end with the
running score ``grader.check_all()``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

from transferlab.grading.labs import assign, plain_markdown

ROOT = Path(__file__).parents[1]
MASTERS = sorted((ROOT / "labs").glob("*.md"))


def test_plain_markdown_turns_the_books_roles_into_text():
    text = (
        "See {doc}`../book/finetune`, {doc}`the math <../book/math>`, {term}`LoRA <lora>`, "
        "{term}`adapter`."
    )
    assert (
        plain_markdown(text, ROOT / "labs")
        == "See *Pretrain and fine-tune*, *the math*, LoRA, adapter."
    )
    assert (
        plain_markdown("{func}`~transferlab.finetune.freeze` and $x$", ROOT / "labs")
        == "`transferlab.finetune.freeze` and $x$"
    )


@pytest.fixture(scope="module")
def lab1(tmp_path_factory) -> nbformat.NotebookNode:
    lab = assign(ROOT / "labs" / "lab1_finetune.md", tmp_path_factory.mktemp("labs"))
    return nbformat.read(lab.student, as_version=4)


def test_the_student_notebook_has_no_raw_myst_roles_and_ends_with_the_running_score(lab1):
    markdown = "\n".join(c.source for c in lab1.cells if c.cell_type == "markdown")
    assert re.findall(r"\{[a-z:]+\}`", markdown) == []
    assert "chapter *Pretrain and fine-tune*" in markdown
    assert lab1.cells[-1].source.strip() == "grader.check_all()"
    assert "otter_ignore" in lab1.cells[-1].metadata.get(
        "tags", []
    )  # the grader does not run it twice


def test_every_master_asks_otter_for_the_running_score():
    for master in MASTERS:
        assert "check_all_cell: true" in master.read_text(), master.name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> dict | list:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _post(url: str, token: str, body: dict) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _execute(ws, code: str, timeout: float = 300) -> tuple[str, list[str]]:
    """Run ``code`` on the kernel behind the websocket ``ws``: (its text output, its errors)."""
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    text, errors, deadline = [], [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            text.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(text), errors
    raise TimeoutError(f"the kernel did not finish within {timeout} s:\n{code}")


def test_make_lab_serves_the_student_notebooks_and_the_first_check_says_not_yet():
    websocket = pytest.importorskip(
        "websocket", reason="websocket-client comes with the 'lab' extra"
    )
    port, token = _free_port(), secrets.token_hex(16)
    flags = f"--no-browser --port={port} --IdentityProvider.token={token} --ServerApp.ip=127.0.0.1"
    proc = subprocess.Popen(
        ["make", "lab", f"JUPYTER_FLAGS={flags}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = (
            time.monotonic() + 300
        )  # make lab first writes the student versions (otter assign)
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"make lab exited with {proc.returncode}:\n{proc.stdout.read()[-4000:]}"
                )
            try:
                status = _get(f"{base}/api/status", token)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not answer within 300 s")
                time.sleep(1)
        assert "started" in status
        lab_page = urllib.request.urlopen(f"{base}/lab?token={token}", timeout=30).read().decode()
        assert "JupyterLab" in lab_page

        listing = _get(f"{base}/api/contents", token)
        names = {item["name"] for item in listing["content"]}
        assert {f"{m.stem}.ipynb" for m in MASTERS} <= names, names
        assert not [n for n in names if n.endswith(".md")], (
            "the masters (solutions, hidden tests) are served"
        )

        nb = nbformat.from_dict(_get(f"{base}/api/contents/lab1_finetune.ipynb", token)["content"])
        assert "# BEGIN SOLUTION" not in json.dumps(nb)
        session = _post(
            f"{base}/api/sessions",
            token,
            {"path": "lab1_finetune.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
        )
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/api/kernels/{session['kernel']['id']}/channels?token={token}",
            timeout=300,
        )
        try:
            for cell in nb.cells:
                if cell.cell_type != "code":
                    continue
                output, errors = _execute(ws, cell.source)
                if re.search(r'grader\.check\("\w+"\)', cell.source):
                    break
                assert errors == [], (
                    f"the student notebook fails before its first check:\n{cell.source}\n{errors}"
                )
            else:
                pytest.fail("no grader.check cell in the student notebook")
        finally:
            ws.close()
        question = re.search(r'grader\.check\("(\w+)"\)', cell.source).group(1)
        assert f"{question} results" in output and "Test case failed" in output, output
        assert f"exercise {question}: complete" in output, (
            "the failure does not say which exercise to complete"
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # make and the JupyterLab it started, nothing else
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
