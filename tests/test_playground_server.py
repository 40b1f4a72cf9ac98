"""Tests for deltaprop.playground.server: the HTTP API through starlette's TestClient, the
package data it serves, the imports it may make, and the `deltaprop-playground` command."""

import ast
import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient
from test_playground_session import SMALL, direct_step, relative

import deltaprop.playground
from deltaprop.gradient_check import TOLERANCE_AUTODIFF
from deltaprop.playground.problem import GRID, load_problem
from deltaprop.playground.server import MAX_BODY, MAX_SESSIONS, create_app
from deltaprop.playground.settings import (
    MAX_CSV_FEATURES,
    MAX_CSV_ROWS,
    MAX_HIDDEN_LAYERS,
    MAX_STEPS_PER_FRAME,
    MAX_WIDTH,
    SAMPLES_RANGE,
    SettingsError,
    parse_settings,
)
from deltaprop.teaching.page import CONTENT_SECURITY_POLICY as PAGE_POLICY

PACKAGE = Path(deltaprop.playground.__file__).parent


@pytest.fixture
def client():
    with TestClient(create_app(max_sessions=3), base_url="http://127.0.0.1") as client:
        yield client


def start(client, **settings) -> dict:
    response = client.post("/api/sessions", json={**SMALL, **settings})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_page_and_its_assets_are_served_from_package_data_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    # its own style and script, and an empty icon (so the browser asks for no favicon.ico)
    assert sorted(assets) == ["/static/playground.css", "/static/playground.js", "data:,"]
    for name in ("playground.js", "draw.js", "step.js", "playground.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and asset.text == (PACKAGE / "static" / name).read_text()
    for name in ("index.html", "playground.js", "draw.js", "step.js", "playground.css"):
        text = (PACKAGE / "static" / name).read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name  # no CDN
        for module in re.findall(r'from "([^"]+)"', text):
            assert module.startswith("./"), module


def test_a_session_starts_advances_and_reports_a_frame(client):
    started = start(client, learning_rate=0.5)
    assert started["step"] == 0 and started["sizes"] == [2, 3, 3, 1]
    assert started["settings"]["learning_rate"] == 0.5 and started["settings"]["hidden"] == [3, 3]
    assert len(started["data"]["x_train"]) == 36 and len(started["boundary"]) == 40 * 40
    frame = client.post(f"/api/sessions/{started['session']}/advance", json={}).json()
    assert frame["step"] == 5 and [p["step"] for p in frame["history"]] == [0, 5]
    assert "data" not in frame  # the points travel once, with the start
    one = client.post(f"/api/sessions/{started['session']}/advance", json={"steps": 1}).json()
    assert one["step"] == 6
    again = client.get(f"/api/sessions/{started['session']}/frame").json()
    assert again["step"] == 6 and again["weights"] == one["weights"]


@pytest.mark.parametrize("settings, field", [
    ({"learning_rate": "abc"}, "learning_rate"), ({"hidden": "4, 99"}, "hidden"),
    ({"batch_size": 500}, "batch_size"), ({"dataset": "csv", "csv": "a,b\n1,2\n"}, "csv_label"),
])
def test_bad_settings_answer_400_naming_the_field_and_change_nothing(client, settings, field):
    identifier = start(client)["session"]
    client.post(f"/api/sessions/{identifier}/advance", json={})
    response = client.post(f"/api/sessions/{identifier}/settings", json={**SMALL, **settings})
    assert response.status_code == 400
    assert response.json()["field"] == field and field in response.json()["message"]
    frame = client.get(f"/api/sessions/{identifier}/frame").json()
    assert frame["step"] == 5 and frame["sizes"] == [2, 3, 3, 1]  # the run goes on unchanged
    assert client.post("/api/sessions", json={**SMALL, **settings}).status_code == 400
    assert start(client)["step"] == 0  # and the server keeps serving


def test_a_restart_applies_new_settings(client):
    identifier = start(client)["session"]
    client.post(f"/api/sessions/{identifier}/advance", json={})
    restarted = client.post(f"/api/sessions/{identifier}/settings",
                            json={**SMALL, "hidden": "5", "activation": "relu"}).json()
    assert restarted["session"] == identifier and restarted["step"] == 0
    assert restarted["sizes"] == [2, 5, 1] and restarted["settings"]["activation"] == "relu"


def test_two_sessions_train_separately_and_old_ones_are_dropped(client):
    first, second = start(client)["session"], start(client, hidden="4")["session"]
    assert first != second
    for _ in range(3):
        client.post(f"/api/sessions/{first}/advance", json={})
    assert client.get(f"/api/sessions/{first}/frame").json()["step"] == 15
    assert client.get(f"/api/sessions/{second}/frame").json()["step"] == 0
    assert client.get(f"/api/sessions/{second}/frame").json()["sizes"] == [2, 4, 1]
    for _ in range(3):  # capacity 3: the least recently used, `second`, goes
        start(client)
    missing = client.get(f"/api/sessions/{second}/frame")
    assert missing.status_code == 404 and "reload the page" in missing.json()["message"]


def test_the_step_has_every_number_and_they_equal_jax_grad(client):
    identifier = start(client, activation="tanh", loss="mse", learning_rate=0.4)["session"]
    client.post(f"/api/sessions/{identifier}/advance", json={})
    record = client.get(f"/api/sessions/{identifier}/step").json()
    assert record["step"] == 5 and record["passed"] and record["largest_error"] < 1e-12
    assert not record["worked_example_page"]  # written for sigmoid + bce
    params = [{"W": np.array(layer["W"]), "b": np.array(layer["b"])} for layer in record["layers"]]
    oracle = direct_step(params, record["x"], record["y"], 0.4, "mse", "tanh")
    for ours, expected in zip(record["layers"], oracle["layers"], strict=True):
        for name in ("z", "a", "delta", "grad_W", "grad_b", "new_W", "new_b"):
            assert relative(ours[name], expected[name]) < 1e-12, name
    frame = client.post(f"/api/sessions/{identifier}/advance", json={"steps": 1}).json()
    for ours, trained in zip(record["layers"], frame["weights"], strict=True):
        assert relative(ours["new_W"], trained) < 1e-14  # the step shown is the step taken


def test_the_step_picture_is_the_worked_examples_svg(client):
    identifier = start(client)["session"]
    record = client.get(f"/api/sessions/{identifier}/step").json()
    picture = client.get(f"/api/sessions/{identifier}/step/picture?example=3")
    assert picture.headers["content-type"].startswith("image/svg+xml")
    assert picture.text.startswith("<svg") and "example" in picture.text
    shown = dict(re.findall(r'<tspan data-q="a" data-layer="2" data-j="(\d)">([^<]*)<', picture.text))
    for j, text in shown.items():
        assert float(text) == pytest.approx(record["layers"][0]["a"][2][int(j) - 1], rel=1e-3)
    bad = client.get(f"/api/sessions/{identifier}/step/picture?example=99")
    assert bad.status_code == 400 and bad.json()["field"] == "example"


def test_sigmoid_and_bce_open_on_the_worked_examples_page(client):
    identifier = start(client, activation="sigmoid", loss="bce")["session"]
    record = client.get(f"/api/sessions/{identifier}/step").json()
    assert record["worked_example_page"]
    page = client.get(f"/sessions/{identifier}/step.html")
    assert page.status_code == 200 and page.headers["content-security-policy"] == PAGE_POLICY
    data = json.loads(re.search(r'id="deltaprop-data">(.*?)</script>', page.text, re.DOTALL).group(1))
    assert data["steps"] == 1 and max(data["errors"]) < 1e-12
    assert relative(data["x"], record["x"]) == 0
    for ours, theirs in zip(record["layers"], data["layers"], strict=True):
        assert relative(ours["delta"], theirs["delta"][0]) < 1e-12
        assert relative(ours["new_W"], theirs["W"][1]) < 1e-12
    tanh = start(client, activation="tanh")["session"]
    refused = client.get(f"/sessions/{tanh}/step.html")
    assert refused.status_code == 400 and "sigmoid" in refused.json()["message"]


def test_requests_from_elsewhere_or_not_json_are_refused(client):
    with TestClient(create_app(), base_url="http://evil.example") as other:
        assert other.get("/api/options").status_code == 400  # DNS rebinding: wrong Host
    form = client.post("/api/sessions", content=b"learning_rate=1",
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    broken = client.post("/api/sessions", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not JSON" in broken.json()["message"]
    huge = client.post("/api/sessions", content=b" " * (MAX_BODY + 1),
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413
    identifier = start(client)["session"]
    steps = client.post(f"/api/sessions/{identifier}/advance", json={"steps": 1000})
    assert steps.status_code == 400 and steps.json()["field"] == "steps"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_playground_imports_neither_the_driver_nor_the_cli():
    imported = set().union(*(_imports(path) for path in PACKAGE.glob("*.py")))
    deltaprop = {name for name in imported if name.startswith("deltaprop")}
    assert deltaprop and not {n for n in deltaprop if n.startswith(("deltaprop.run", "deltaprop.cli"))}
    assert not {n for n in deltaprop if n.startswith("deltaprop.training")}  # being rewritten
    assert "torch" not in {name.split(".")[0] for name in imported}


def test_the_command_refuses_a_host_other_than_this_machine(capsys):
    from deltaprop.playground.server import main

    with pytest.raises(SystemExit) as exit:
        main(["--host", "0.0.0.0"])
    assert exit.value.code == 2 and "serves this machine only" in capsys.readouterr().err


def test_a_step_that_overflows_is_refused_with_a_message_not_a_500(client):
    identifier = start(client, learning_rate=1e308, activation="relu")["session"]
    for path in ("step", "step/picture?example=1"):
        refused = client.get(f"/api/sessions/{identifier}/{path}")
        assert refused.status_code == 400 and refused.json()["field"] == "learning_rate"
        assert "lower the learning rate" in refused.json()["message"]


DOC = Path(__file__).resolve().parents[1] / "docs" / "playground.md"


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_the_doc_names_what_exists_and_quotes_the_messages_and_limits_the_code_has():
    doc = DOC.read_text(encoding="utf-8")
    names = set(re.findall(r"`(deltaprop(?:\.[A-Za-z_]\w*)+)", doc))
    assert len(names) > 8 and [n for n in names if not _resolves(n)] == []
    for form in ({"learning_rate": "abc"}, {"hidden": "4, 99"}, {"batch_size": 100000}):
        with pytest.raises(SettingsError) as raised:
            load_problem(parse_settings(form))
        assert f"`{raised.value}`" in doc.replace("\n  ", " ")
    layers = f"at most {MAX_HIDDEN_LAYERS} layers of 1 to {MAX_WIDTH} units"
    limits = [f"{SAMPLES_RANGE[0]} to {SAMPLES_RANGE[1]}", layers, f"1 to {MAX_STEPS_PER_FRAME}",
              f"2 to {MAX_CSV_FEATURES} features", f"at most {MAX_CSV_ROWS} rows",
              f"{GRID} × {GRID} grid", f"more than {MAX_SESSIONS} sessions",
              f"at most {MAX_BODY / 1e6:.1f} MB", f"({TOLERANCE_AUTODIFF:.0e})"]
    flat = " ".join(doc.split())
    assert [limit for limit in limits if limit not in flat] == []


def test_every_static_file_is_package_data_and_the_command_is_declared():
    import fnmatch

    project = (DOC.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    listed = re.search(r'^"deltaprop.playground" = (\[.*\])$', project, re.MULTILINE)
    patterns = ast.literal_eval(listed.group(1))  # a TOML list of strings reads as Python
    files = [path.relative_to(PACKAGE).as_posix() for path in (PACKAGE / "static").iterdir()]
    assert len(files) == 5
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
    assert re.search(r'packages = \[[^]]*"deltaprop.playground"', project)
    assert 'deltaprop-playground = "deltaprop.playground.server:main"' in project
