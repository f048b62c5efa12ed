"""Pixglot's web page: search indexed images by text in any language or by image; evaluation runs.

Start it with `pixglot ui` (localhost only unless told otherwise), or from a checkout with
`streamlit run app/main.py -- --collection NAME --db URL`.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import app  # noqa: F401 - installed (pip install -e .)
except ModuleNotFoundError:  # a plain checkout run by `streamlit run app/main.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st

from app import state
from app.views import evaluation, search

# Query boxes and captions take their direction from their text (the CSS form of dir="auto"), so
# Arabic, Hebrew and Persian read right to left.
STYLE = """
<style>
.stTextInput input { unicode-bidi: plaintext; }
.pg-caption { font-size: 0.85rem; overflow-wrap: anywhere; line-height: 1.3; }
.pg-missing { aspect-ratio: 1; display: flex; align-items: center; justify-content: center;
              background: #eee; color: #666; font-size: 0.8rem; border-radius: 4px; }
.st-key-results img { aspect-ratio: 1; object-fit: cover; border-radius: 4px; }
.st-key-model_views img { border: 1px solid #ccc; }
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
</style>
"""

# No stack trace reaches the page, however the app was started (errors are logged in full).
st.set_option("client.showErrorDetails", "none")
st.set_page_config(page_title="Pixglot", page_icon="🔎", layout="wide")
st.markdown(STYLE, unsafe_allow_html=True)
st.title("Pixglot", anchor=False)
settings = state.settings()
search_tab, eval_tab = st.tabs(["Search", "Evaluation runs"])
with search_tab, state.shown_errors("searching"):
    search.render(settings)
with eval_tab, state.shown_errors("showing the evaluation runs"):
    evaluation.render(settings)
