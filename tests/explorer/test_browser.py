"""The explorer in a real browser: headless Debian Chromium, driven by Selenium through
chromedriver, draws with pointer events (a mouse stroke and a pen stroke) on the page that
`python -m pipeline.explore` serves, and checks what it shows against the networks' own
predictions. A screenshot is kept in test-artifacts/explorer.png."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.explorer.looking import look_inside
from pipeline.nn import MLP, model_to_arrays
from pipeline.plumbing.files import save_arrays
from tests.conftest import REPO, free_port, split_arrays, tool_env

pytestmark = pytest.mark.slow  # one xdist worker runs it: XDIST_GROUPS in tests/conftest.py
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = REPO / "test-artifacts"
POLL = 0.05  # seconds between a wait's looks at the page (Selenium's own: half a second)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1500",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("networks")
    rng = np.random.default_rng(11)
    made = {"deep": MLP.create((784, 32, 16, 10), "relu", "he", rng),
            "notes": MLP.create((784, 10, 10), "relu", "uniform", rng)}  # fmt: skip
    for name, network in made.items():
        save_arrays(folder / f"{name}.npz", **model_to_arrays(network))
    save_arrays(folder / "test.npz", **split_arrays(80, 3))
    return folder, made


def serve(folder: Path, *models: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Start the explorer; return it, its URL and the lines it printed before serving."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.explore", *models, "--port", str(port),
         "--test-data", str(folder / "test.npz")],
        cwd=folder, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "serving on" in line:
            return process, f"http://127.0.0.1:{port}/", lines
    process.kill()
    raise AssertionError("the explorer did not serve:\n" + "\n".join(lines))


def open_page(browser, url: str) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 30, poll_frequency=POLL).until(
        lambda page: page.execute_script("return document.body.dataset.ready === 'true'")
    )


def settled_answer(browser):
    """The page's last answer, once no request is in flight."""
    from selenium.webdriver.support.wait import WebDriverWait

    script = "const e = window.explorer; return !e.busy && !e.dirty && e.last ? e.last : null"
    waiting = WebDriverWait(browser, 30, poll_frequency=POLL)
    return waiting.until(lambda page: page.execute_script(script))


def draw_a_seven(browser) -> None:
    """The bar with a mouse, the stem with a pen: pointer events of both kinds."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    canvas = browser.find_element("id", "canvas")
    for kind, points in ((interaction.POINTER_MOUSE, [(-70, -90), (70, -90)]),
                         (interaction.POINTER_PEN, [(70, -90), (30, -10), (-10, 90)])):  # fmt: skip
        # 20 ms a move, not Selenium's 250: each move is still its own pointermove event.
        actions = ActionBuilder(browser, mouse=PointerInput(kind, kind), duration=20)
        pointer = actions.pointer_action
        pointer.move_to(canvas, *points[0]).pointer_down()
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            for step in range(1, 9):
                pointer.move_to(canvas, x0 + (x1 - x0) * step // 8, y0 + (y1 - y0) * step // 8)
        pointer.pointer_up()
        actions.perform()


def shown_prediction(browser, index: int) -> int:
    return int(browser.find_element("id", f"model-{index}").get_attribute("data-predicted"))


def test_a_drawn_seven_and_a_listed_mistake_are_answered_as_the_networks_answer(browser, networks):
    folder, made = networks
    process, url, printed = serve(folder, "deep.npz", "--compare", "notes.npz")
    try:
        assert printed[-1].startswith(f"explore: serving on {url} (this machine only")
        open_page(browser, url)
        draw_a_seven(browser)
        answer = settled_answer(browser)
        shown = json.loads(browser.find_element("id", "input").get_attribute("data-pixels"))
        image = np.array(shown, dtype=np.float32)
        assert image.shape == (784,) and image.max() == 1.0
        # Both models, side by side, show what their own forward pass makes of that input.
        for index, name in enumerate(("deep", "notes")):
            own = made[name].predict(image[None, :])[0]
            assert shown_prediction(browser, index) == own == answer["models"][index]["predicted"]
        # Every hidden layer is a strip with a cell per unit, lit where the unit fires.
        deep = browser.find_element("id", "model-0")
        strips = deep.find_elements("css selector", ".strip")
        assert [len(s.find_elements("css selector", ".cell")) for s in strips] == [32, 16]
        lit = browser.execute_script(
            "return [...document.querySelectorAll('#model-0 .strip .cell')].map(c => {"
            " const rgba = getComputedStyle(c).backgroundColor.match(/[\\d.]+/g).map(Number);"
            " return rgba[0] === 192 && (rgba.length === 3 || rgba[3] > 0); })")  # fmt: skip
        passed = made["deep"].forward(image[:, None]).activations
        assert lit == [bool(a > 0) for layer in passed for a in layer[:, 0]] and any(lit)
        # The weights atlas loaded, and the picked-out units are the core's top units.
        width = browser.execute_script(
            "return document.querySelector('#model-0 .atlas img').naturalWidth"
        )
        assert width == 6 * 29 + 1  # 32 units: 6 columns of 28 px tiles
        expected = look_inside(made["deep"], image)["top_units"]
        picks = [int(p.get_attribute("data-unit"))
                 for p in deep.find_elements("css selector", ".pick")]  # fmt: skip
        assert picks == expected and picks
        # Each frame sits on its unit's tile (6 columns; tiles 28 px, 1 px apart) as shown.
        placed = browser.execute_script(
            "const img = document.querySelector('#model-0 .atlas img').getBoundingClientRect();"
            "return [...document.querySelectorAll('#model-0 .pick')].map(p => {"
            " const r = p.getBoundingClientRect();"
            " return [(r.left - img.left) / img.width, (r.top - img.top) / img.height]; })"
        )  # fmt: skip
        rows = -(-32 // 6)
        for unit, (left, top) in zip(picks, placed, strict=True):
            assert abs(left - (1 + 29 * (unit % 6)) / 175) < 0.01
            assert abs(top - (1 + 29 * (unit // 6)) / (29 * rows + 1)) < 0.01
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "explorer.png"))
        # A test image from the list of mistakes goes into the network as it is.
        mistake = browser.find_element("css selector", ".mistake")
        index = int(mistake.get_attribute("data-index"))
        mistake.click()
        from selenium.webdriver.support.wait import WebDriverWait

        WebDriverWait(browser, 30, poll_frequency=POLL).until(lambda page: page.execute_script(
            f"return window.explorer.last && window.explorer.last.input.length === 784 && "
            f"!window.explorer.busy && document.getElementById('input').dataset.pixels !== "
            f"{json.dumps(json.dumps(shown))}"))  # fmt: skip
        test_image = split_arrays(80, 3)["images"][index]
        own = made["deep"].predict(test_image[None, :])[0]
        label = split_arrays(80, 3)["labels"][index]
        assert shown_prediction(browser, 0) == own != label
        assert mistake.text == f"{label} → {own}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_model_that_cannot_load_says_why_in_the_terminal_and_on_the_page(browser, networks):
    folder, _ = networks
    process, url, printed = serve(folder, "deep.npz", "--compare", "gone.npz")
    try:
        errors = [line for line in printed if line.startswith("explore: error: ")]
        assert errors == [
            "explore: error: gone.npz is missing: make it with `make repro`, or give another "
            "MODEL: a models/model.npz path, @alias, a version number or a run id"
        ]
        open_page(browser, url)
        shown = browser.find_element("css selector", "#model-1 .error").text
        assert shown == errors[0].removeprefix("explore: error: ")
        assert browser.find_elements("css selector", "#model-1 .strip") == []
    finally:
        process.terminate()
        process.wait(timeout=30)
