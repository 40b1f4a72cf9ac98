"""The page's script, static/page.js, as a string to inline into backprop.html (so that the page
stays one self-contained file). The script is package data: see that file for what it does."""

from importlib import resources

SCRIPT = resources.files("deltaprop.teaching").joinpath("static", "page.js").read_text("utf-8")
