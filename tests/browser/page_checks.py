"""What every hosted page must get right on a phone, checked in the browser: the direction of the language, no
message key shown in place of its text, nothing wider than the screen, and each value of a list of details
beside its label.

:func:`page_problems` reads the page once (one script) and returns what is wrong, each problem naming the
element or text at fault, so a test can photograph a series of pages and report them all at the end.
"""

from __future__ import annotations

import re
from typing import Any

#: Country-code and generic top-level domains, whose names are not message keys (``hoviyat.ir``).
_DOMAIN_ENDINGS = re.compile(r"^(?:[a-z]{2}|com|org|net|info|edu|gov|example|test|local|localhost)$")
_ADDRESSES = re.compile(r"\S+@\S+|\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
#: ``support.message``, ``token.issued``: dotted lower-case words of two letters or more, alone.
_DOTTED = re.compile(r"(?<![\w.@/:-])[a-z][a-z0-9_]+(?:\.[a-z][a-z0-9_]+)+(?![\w@/-]|\.\w)")
#: ``ir_sabt_ahval``, ``access_denied``: a snake_case identifier, which no sentence of the pages contains.
_SNAKE = re.compile(r"(?<![\w.@/:-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w@/-])")


def raw_keys(text: str) -> list[str]:
    """The message keys and identifiers in ``text`` that a reader should never see; e-mail addresses, URLs and
    domain names are not among them."""
    text = _ADDRESSES.sub(" ", text)
    found = [m.group(0) for m in _SNAKE.finditer(text)]
    for match in _DOTTED.finditer(text):
        if not _DOMAIN_ENDINGS.match(match.group(0).rsplit(".", 1)[1]):
            found.append(match.group(0))
    return found


# The facts of the page in one round trip. Text is read from text nodes and the attributes people see or hear
# (alt, title, placeholder, aria-label), leaving out what a user types or copies as it is (form fields, code).
# An element is "outside" when its box passes either edge of the screen (in right-to-left pages, overflow goes
# left), unless an ancestor clips or scrolls it.
_PAGE_FACTS = """
(width) => {
  const describe = (el) => {
    let name = el.tagName.toLowerCase();
    if (el.id) name += '#' + el.id;
    if (el.classList.length) name += '.' + [...el.classList].join('.');
    const text = (el.innerText || el.value || '').trim().replace(/\\s+/g, ' ').slice(0, 60);
    return text ? `${name} "${text}"` : name;
  };
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') return true;
    }
    return false;
  };
  const skipped = 'script, style, noscript, template, input, textarea, select, code, pre, kbd, samp';
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skipped) || !node.textContent.trim()) continue;
    if (!parent.getClientRects().length) continue;  // not shown
    texts.push(node.textContent.trim());
  }
  for (const el of document.querySelectorAll('[alt], [title], [placeholder], [aria-label]')) {
    for (const name of ['alt', 'title', 'placeholder', 'aria-label']) {
      const value = el.getAttribute(name);
      if (value) texts.push(value);
    }
  }
  texts.push(document.title);
  const outside = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if ((box.right > width + 0.5 || box.left < -0.5) && !clipped(el)) {
      outside.push(`${describe(el)} spans ${Math.round(box.left)}..${Math.round(box.right)} px`);
    }
  }
  // A value of a label/value list must start at its label's side: at the right in a right-to-left page.
  const rtl = getComputedStyle(document.body).direction === 'rtl';
  const adrift = [];
  for (const dd of document.querySelectorAll('dd')) {
    const range = document.createRange();
    range.selectNodeContents(dd);
    const content = range.getBoundingClientRect(), box = dd.getBoundingClientRect();
    if (!content.width) continue;
    const gap = rtl ? box.right - content.right : content.left - box.left;
    if (gap > 2) adrift.push(`${describe(dd)} is ${Math.round(gap)} px away from its label`);
  }
  return {
    adrift,
    dir: document.documentElement.dir,
    lang: document.documentElement.lang,
    bodyDirection: getComputedStyle(document.body).direction,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    texts,
    outside,
  };
}
"""


def page_problems(page: Any, locale: str, width: int) -> list[str]:
    """What is wrong with the page shown in Playwright's ``page``, in a ``locale`` page ``width`` CSS pixels wide."""
    facts = page.evaluate(_PAGE_FACTS, width)
    expected = "rtl" if locale == "fa" else "ltr"
    problems = []
    if facts["dir"] != expected or facts["bodyDirection"] != expected:
        problems.append(f"direction is {facts['dir']!r} (body {facts['bodyDirection']!r}), not {expected!r}")
    if facts["lang"] != locale:
        problems.append(f"lang is {facts['lang']!r}, not {locale!r}")
    if facts["scrollWidth"] > min(width, facts["innerWidth"]):
        problems.append(f"the page scrolls sideways: {facts['scrollWidth']} px wide on a {width} px screen")
    problems += [f"outside the screen: {element}" for element in facts["outside"][:8]]
    problems += facts["adrift"]
    keys = sorted({key for text in facts["texts"] for key in raw_keys(text)})
    problems += [f"raw message key or identifier shown: {key!r}" for key in keys]
    return problems
