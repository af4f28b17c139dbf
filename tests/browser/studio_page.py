"""Driving the studio page like a person: fill, pick, click; and reading the player's debug log."""
from __future__ import annotations

from pathlib import Path

from test_app_support import ARTIFACTS


def open_studio(page, url: str) -> None:
    page.goto(url + "/", wait_until="load")
    page.wait_for_selector("#speak-btn", timeout=60_000)
    page.wait_for_function("() => window.QwenStudio && window.QwenStudio.root", timeout=30_000)


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(300)


def fill(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(text)
    box.dispatch_event("input")
    box.blur()


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the dropdown labelled `label`."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(300)


def open_accordion(page, elem_id: str) -> None:
    page.locator(f"#{elem_id} .label-wrap, #{elem_id} button").first.click()
    page.wait_for_timeout(300)


def set_speech_options(page, seed: int, max_seconds: float) -> None:
    open_accordion(page, "speak-advanced")
    set_number(page, "speak-seed", seed)
    set_number(page, "speak-max-seconds", max_seconds)


def utterance_count(page) -> int:
    return page.evaluate("() => window.QwenStudio.debug.utterances.length")


def speak_and_wait(page, timeout_ms: int = 90_000, shortcut: bool = False) -> dict:
    """Click Speak (or press Ctrl+Enter in the text box), wait for the utterance to end;
    returns the player's record of it."""
    before = utterance_count(page)
    if shortcut:
        page.press("#speak-text textarea", "Control+Enter")
    else:
        page.click("#speak-btn")
    page.wait_for_function(f"() => {{ const u = window.QwenStudio.debug.utterances; "
                           f"return u.length > {before} && u[u.length - 1].done; }}", timeout=timeout_ms)
    return page.evaluate("() => window.QwenStudio.debugSamples()")


def wait_text(page, elem_id: str, text: str, present: bool = True, timeout_ms: int = 30_000) -> None:
    """Wait until the element's visible text contains (or no longer contains) `text`."""
    page.wait_for_function("([id, text, present]) => { const e = document.getElementById(id); "
                           "return !!e && e.innerText.includes(text) === present; }", arg=[elem_id, text, present],
                           timeout=timeout_ms)


def player_text(page, role: str) -> str:
    return page.inner_text(f'#player [data-role="{role}"]')
