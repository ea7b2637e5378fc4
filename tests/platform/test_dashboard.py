"""`priorlab dashboard`: the ablation numbers, the page, the export, the server and (integration)
the page in headless Chromium.

The experiment is written here: study `memory-label-injection`, 12 trials (3 injection modes x 4
seeds), 3 reports each (steps 10, 20, 30), two trials stopped at step 20 (as ASHA would) and one
that failed with an error file. The browser test needs /usr/bin/chromium and
/usr/bin/chromedriver (`bash scripts/setup_browser.sh`); it fails, not skips, without them.

    .venv/bin/python -m pytest tests/platform/test_dashboard.py          # all, with the browser
    .venv/bin/python -m pytest tests/platform/test_dashboard.py -m "not integration"
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from priorlab.platform import cli_dashboard
from priorlab.platform.dashboard import (DashboardError, make_server, render_dashboard,
                                         resolve_experiments, write_dashboard)
from priorlab.platform.dashboard_data import (ablation_tables, epsilon_squared, load_experiment,
                                              param_importances)
from priorlab.platform.dashboard_page import build_experiment_page
from priorlab.platform.report import STUDY_FILE
from priorlab.platform.results import ResultsStore, trial_row

REPO = Path(__file__).resolve().parents[2]
MODES = ("first", "every", "lstm")
BASE = {"first": 0.30, "every": 0.40, "lstm": 0.50}
STOPPED = {0: 20, 4: 20}          # trial index -> last step (early-stopped)
FAILED = 11
FIXED = {"max_iters": 30, "eval_every": 10, "report_shots": [1, 2]}


def acc(i: int, step: int) -> float:
    return BASE[MODES[i % 3]] + 0.01 * (i // 3) + 0.005 * step + 0.002 * ((i * 7) % 5)


def _config(i: int) -> dict:
    return {**FIXED, "label_injection": MODES[i % 3], "lr": [1e-3, 3e-3, 1e-2, 2e-2][i // 3],
            "channels": [8, 16][i % 2], "seed": i // 3}


def write_experiment(exp: Path) -> Path:
    exp.mkdir(parents=True, exist_ok=True)
    (exp / STUDY_FILE).write_text(json.dumps({"study": "memory-label-injection", "fixed": FIXED,
                                              "seed": 0}))
    store = ResultsStore(exp)
    history, rows = [], []
    for i in range(12):
        last = 10 if i == FAILED else STOPPED.get(i, 30)
        for step in range(10, last + 1, 10):
            metrics = {"step": float(step), "eval/acc_1shot": acc(i, step), "training_iteration": step // 10}
            history.append(trial_row(f"t{i:02d}", "RUNNING", _config(i), metrics))
        row = trial_row(f"t{i:02d}", "ERROR" if i == FAILED else "TERMINATED", _config(i), metrics)
        ckpt = exp / "train_runs" / f"train_t{i:02d}" / f"checkpoint_{last:06d}"
        ckpt.mkdir(parents=True)
        row["checkpoint_path"] = str(ckpt)
        if i == FAILED:
            err = exp / f"trial_t{i:02d}" / "error.txt"
            err.parent.mkdir()
            err.write_text("Traceback (most recent call last):\n" + "  frame\n" * 1500
                           + "RuntimeError: CUDA out of memory (the last line)\n")
            row["error_file"] = str(err)
        rows.append(row)
    store.append_history(history, key="step")
    store.upsert(rows)
    # a render in the best trial's checkpoint (t08: lstm, seed 2, reached step 30)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(
        exp / "train_runs" / "train_t08" / "checkpoint_000030" / "turntable_0.png")
    return exp


@pytest.fixture
def experiment(tmp_path) -> Path:
    return write_experiment(tmp_path / "memory-label-injection-20261127-101500")


def _expected(mode: str) -> tuple[float, float, int]:
    """mean, 95% t half-width, n over the trials of ``mode`` that reached step 30 (by hand)."""
    from scipy import stats

    values = [acc(i, 30) for i in range(12)
              if MODES[i % 3] == mode and i != FAILED and STOPPED.get(i, 30) == 30]
    n = len(values)
    half = stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n)
    return float(np.mean(values)), float(half), n


# ----------------------------------------------------------------------------- numbers

def test_ablation_compares_each_choice_at_equal_budget(experiment):
    tables = ablation_tables(load_experiment(experiment))
    assert len(tables) == 1          # the ran-to-the-end table would repeat it: not shown
    table = tables[0]
    assert table.at == 30 and "Equal budget: every choice at step 30" in table.title
    assert "9 of 11 finished trials" in table.title
    rows = {r.labels["label_injection"]: r for r in table.rows}
    assert list(rows) == ["every", "first", "lstm"]
    for mode, row in rows.items():
        mean, half, n = _expected(mode)
        assert row.interval.n == n == 3
        assert row.interval.mean == pytest.approx(mean, abs=1e-12)
        assert row.interval.half_width == pytest.approx(half, rel=1e-6)
    # finished trials per choice, the failed one not among them; early-stopped ones counted
    assert {m: r.total for m, r in rows.items()} == {"first": 4, "every": 4, "lstm": 3}


def test_unknown_study_renders_from_columns_with_combinations(tmp_path):
    exp = tmp_path / "mystery"
    exp.mkdir()
    (exp / STUDY_FILE).write_text(json.dumps({"study": "not-a-study", "fixed": {}}))
    rows = []
    for i, (model, bias) in enumerate([(m, b) for m in ("a", "b") for b in (False, True)] * 2):
        psnr = 20.0 + 3.0 * (model == "b") + 1.0 * bias + 0.1 * i
        rows.append(trial_row(f"m{i}", "TERMINATED", {"model": model, "bias": bias, "lr": 0.01 * (i + 1)},
                              {"train/loss": 1.0 / (i + 1), "eval/psnr": psnr, "eval/psnr_ci95": 0.2}))
    ResultsStore(exp).upsert(rows)
    e = load_experiment(exp)
    assert e.metric == "eval/psnr" and e.mode == "max"
    assert e.group_by == ["model", "bias"] and "lr" in e.searched
    assert any("not in this priorlab's registry" in n for n in e.notes)
    (table,) = ablation_tables(e)
    assert table.at is None and "last report" in table.title
    labels = [r.labels for r in table.rows]
    assert labels[:4] == [{"model": "a"}, {"model": "b"}, {"bias": "False"}, {"bias": "True"}]
    assert len(labels) == 8 and labels[4] == {"model": "a", "bias": "False"}
    b_true = next(r for r in table.rows if r.labels == {"model": "b", "bias": "True"})
    assert b_true.interval.n == 2 and b_true.interval.mean == pytest.approx(24.0 + 0.1 * (3 + 7) / 2)
    html = render_dashboard([exp])
    assert "eval/psnr" in html and "not-a-study" in html


def test_importance_is_variance_explained_by_each_key():
    from scipy import stats

    rng = np.random.default_rng(0)
    groups = np.repeat(["a", "b", "c"], 5)
    values = np.where(groups == "c", 1.0, 0.0) + rng.normal(0, 0.3, 15)
    f = stats.f_oneway(*(values[groups == g] for g in "abc")).statistic
    k, n = 3, 15
    assert epsilon_squared(values, groups) == pytest.approx((k - 1) * (f - 1) / ((k - 1) * f + n - k))
    assert math.isnan(epsilon_squared(values[:2], groups[:2]))          # one group: undefined
    assert math.isnan(epsilon_squared(np.array([1.0, 2.0]), np.array(["a", "b"])))  # no dof within


def test_importances_of_categorical_and_numeric_keys(experiment):
    importances, note = param_importances(load_experiment(experiment))
    by_key = {imp.key: imp for imp in importances}
    assert set(by_key) == {"label_injection", "lr", "channels"}
    assert importances[0].key == "label_injection" and by_key["label_injection"].value > 0.8
    assert by_key["channels"].how == "numeric values" and by_key["label_injection"].how == "values"
    assert "epsilon-squared" in note and "11 finished trials" in note


def test_fewer_than_three_trials_give_a_reason_not_an_error(tmp_path):
    exp = tmp_path / "small"
    exp.mkdir()
    (exp / STUDY_FILE).write_text(json.dumps({"study": "memory-label-injection", "fixed": {}}))
    ResultsStore(exp).upsert([trial_row("x", "TERMINATED", {"label_injection": "lstm", "lr": 0.01},
                                        {"eval/acc_1shot": 0.4, "step": 10.0})])
    importances, note = param_importances(load_experiment(exp))
    assert importances == [] and "needs at least 3 finished trials" in note
    assert "0.4 (n=1)" in ablation_tables(load_experiment(exp))[0].rows[0].interval.text(".1f")


# ----------------------------------------------------------------------------- the page

class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def test_page_has_every_section_and_valid_figures(experiment):
    import plotly.graph_objects as go

    page = build_experiment_page(experiment, 0)
    assert set(page.figures) == {"exp0-choice-0", "exp0-parallel", "exp0-curves", "exp0-importance"}
    for fig in page.figures.values():
        go.Figure(fig)        # raises on anything outside plotly's figure schema
    boxes = {t["name"]: t["y"] for t in page.figures["exp0-choice-0"]["data"]}
    assert boxes["lstm"] == pytest.approx([acc(i, 30) for i in (2, 5, 8)])
    html = render_dashboard([experiment])
    mean, half, _ = _expected("lstm")
    assert f"<td>{mean:.4g}</td>" in html and f"<td>{half:.3g}</td>" in html
    assert 'class="best"' in html                       # lstm: the best mean
    for text in ("Per choice", "The sweep", "Learning curves", "Parameter importances",
                 "Best trials", "Failed trials", "chance level 0.2"):
        assert text in html
    assert "RuntimeError: CUDA out of memory (the last line)" in html
    assert "bytes cut" in html and "frame\n" * 1000 not in html
    best = html[html.index("Best trials"):]
    assert best.index("t08") < best.index("t05")         # sorted by the metric, higher first
    assert "data:image/png;base64," in best               # the render, inlined
    assert (experiment / "train_runs" / "train_t08" / "checkpoint_000030").as_uri() in best


def test_no_finished_trials_yet_is_a_section_not_a_traceback(tmp_path):
    exp = tmp_path / "fresh"
    exp.mkdir()
    (exp / STUDY_FILE).write_text(json.dumps({"study": "memory-label-injection", "fixed": {}}))
    assert "No finished trials yet" in render_dashboard([exp])
    ResultsStore(exp).append_history([trial_row("r1", "RUNNING", {"label_injection": "lstm"},
                                                {"step": 10.0, "eval/acc_1shot": 0.3})], key="step")
    page = build_experiment_page(exp, 0)
    assert list(page.figures) == ["exp0-curves"]
    html = render_dashboard([exp])
    assert "No finished trials yet" in html and "1 trial(s) are reporting" in html


def test_bad_folders_are_clear_errors(tmp_path, experiment):
    with pytest.raises(DashboardError, match="no experiment folder nope"):
        resolve_experiments(["nope"], tmp_path / "runs")
    with pytest.raises(DashboardError, match=r"is not a priorlab experiment.*holds experiments: "
                                             "memory-label-injection-20261127-101500"):
        resolve_experiments([str(tmp_path)])
    with pytest.raises(DashboardError, match="no experiments under"):
        resolve_experiments([], tmp_path / "empty")
    assert resolve_experiments([experiment.name], tmp_path) == [experiment]
    assert resolve_experiments([], tmp_path) == [experiment]


def test_export_is_one_self_contained_file(experiment, tmp_path):
    out = write_dashboard([experiment], tmp_path / "report.html")
    text = out.read_text()
    tags = _Tags()
    tags.feed(text)
    links = [(t, k, v) for t, k, v in tags.attrs if k in ("src", "href")]
    assert links and not [x for x in links if x[2].startswith(("http:", "https:", "//"))]
    assert "127.0.0.1" not in text
    assert not [x for x in tags.attrs if x[0] == "script" and x[1] == "src"]   # every script inline
    plotly_scripts = [s for s in tags.scripts if "plotly.js v" in s[:200]]
    assert len(plotly_scripts) == 1
    rest = text.replace(plotly_scripts[0], "")
    assert "http://" not in rest and "https://" not in rest


def test_cli_exports_and_reports_bad_input(experiment, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="priorlab")
    cli_dashboard.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", experiment.name, "--runs-dir", str(tmp_path),
                              "--export", str(tmp_path / "x.html")])
    assert cli_dashboard.cmd_dashboard(args) == 0 and (tmp_path / "x.html").stat().st_size > 1e6
    assert "self-contained" in capsys.readouterr().out
    with pytest.raises(cli_dashboard.DashboardError, match="is a file, not an experiment folder"):
        cli_dashboard.cmd_dashboard(parser.parse_args(["dashboard", str(tmp_path / "x.html"),
                                                       "--export", str(tmp_path / "y.html")]))


# ----------------------------------------------------------------------------- the server

def _get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # straight to loopback
    try:
        with opener.open(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture
def server(experiment):
    srv = make_server([experiment], port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_server_routes_and_busy_port(server, experiment):
    from urllib.parse import quote

    assert server.server_address[0] == "127.0.0.1"
    status, body = _get(server.url)
    assert status == 200 and b'<script src="/plotly.min.js">' in body and b"t08" in body
    status, body = _get(server.url + "plotly.min.js")
    assert status == 200 and len(body) > 1_000_000
    png = experiment / "train_runs" / "train_t08" / "checkpoint_000030" / "turntable_0.png"
    assert _get(f"{server.url}file?path={quote(str(png))}") == (200, png.read_bytes())
    assert _get(f"{server.url}file?path={quote(str(png.parent))}")[0] == 200   # a listing
    assert _get(f"{server.url}file?path=/etc/passwd")[0] == 403
    with pytest.raises(DashboardError, match="cannot listen on 127.0.0.1:.*another --port"):
        make_server([experiment], port=server.server_address[1])


# ----------------------------------------------------------------------------- the browser

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _browser():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail(f"the dashboard's browser test needs {CHROMIUM} and {CHROMEDRIVER}: run "
                    "`bash scripts/setup_browser.sh` (installs Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2600",
                 # nothing leaves the machine: background services off, any proxy use dead-ends
                 "--proxy-server=http://127.0.0.1:9", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))


def _wait_drawn(driver, timeout: float = 120.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body && document.body.getAttribute('data-ready')"))
    assert driver.execute_script("return document.body.getAttribute('data-ready')") == "1"
    plots = driver.find_elements("css selector", "div.plot")
    assert plots and all(p.get_attribute("data-drawn") == "1" and "js-plotly-plot" in p.get_attribute("class")
                         and p.find_elements("css selector", "svg.main-svg") for p in plots)


def _visible_rows(driver) -> int:
    return sum(r.is_displayed() for r in driver.find_elements("css selector", "table.ablation tbody tr"))


@pytest.mark.integration
def test_dashboard_in_headless_chromium(server, experiment):
    from selenium.webdriver.support.ui import Select

    driver = _browser()
    try:
        driver.get(server.url)
        _wait_drawn(driver)
        assert len(driver.find_elements("css selector", "div.plot")) == 4
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        assert _visible_rows(driver) == 3
        Select(driver.find_element("css selector", "select.filter[data-key='label_injection']")
               ).select_by_visible_text("lstm")
        assert _visible_rows(driver) == 1
        assert driver.find_element("css selector", ".count").text == "showing 1 of 3 rows"
        text = driver.find_element("css selector", "input.filter-text")
        Select(driver.find_element("css selector", "select.filter")).select_by_visible_text("all")
        text.send_keys("fir")
        assert _visible_rows(driver) == 1
        # a trial finishes while the page is open: it is there on reload
        config = {**_config(2), "seed": 9}
        ResultsStore(experiment).upsert([trial_row("t99", "TERMINATED", config,
                                                   {"eval/acc_1shot": 0.99, "step": 30.0})])
        driver.refresh()
        _wait_drawn(driver)
        best = driver.find_element("css selector", "table.best-trials tbody tr")
        assert "t99" in best.text and "0.99" in best.text
        assert "13 trials: 12 finished, 1 failed" in driver.find_element("tag name", "body").text
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        (REPO / "test-artefacts").mkdir(exist_ok=True)
        assert driver.save_screenshot(str(REPO / "test-artefacts" / "dashboard.png"))
    finally:
        driver.quit()
