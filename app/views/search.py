"""The search tab: a query in any language and/or an image, filters, a grid of results, pages."""

from __future__ import annotations

import html
import os
from datetime import date
from typing import TYPE_CHECKING

import streamlit as st

from app import query, state, thumbnails
from app.query import ImageQuery, SearchRequest
from data.picture_names import Names, names_of, query_language
from ground.errors import InputError, PixglotError
from ground.paths import printable
from indexer.collection import Collection
from indexer.scan import IMAGE_EXTENSIONS
from indexer.searching import Hit, parse_query

if TYPE_CHECKING:
    from pathlib import Path

    from streamlit.runtime.uploaded_file_manager import UploadedFile

    from model import Encoder

COLUMNS = 4
UPLOAD_TYPES = sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS)
PLACEHOLDER = "Search in any language: قطة · 猫 · кошка · बिल्ली · beach -people"


def render(settings: state.Settings) -> None:
    infos = state.collection_infos(settings.db_url)
    if not infos:
        st.info(
            "No collections yet. Index a folder of images, then reload this page:\n\n"
            "`pixglot index ~/Pictures --collection photos`"
        )
        return
    details = st.sidebar.container()  # the selected result, on top of the sidebar where it stays in view
    info = _pick_collection(infos, settings)
    if info.count == 0:
        if info.busy:
            st.info(f"Collection **{info.name}** is being built: an indexing run is adding its first images.")
            st.button("Refresh", key="refresh")
        else:
            st.info(
                f"Collection **{info.name}** has no images yet. Add some with "
                f"`pixglot index FOLDER --collection {info.name}`."
            )
        return
    if info.busy:
        st.info("An indexing run is updating this collection; results cover the images indexed so far.")
    collection = state.open_collection(settings.db_url, info.name, info.uid)
    with collection.lock:
        collection.reload()  # another process may have re-indexed it with another model
    try:
        with st.spinner("Loading the model…"):
            encoder = collection.encoder()
            state.warm(settings.db_url, info.name, info.uid, encoder.fingerprint)
    except PixglotError as err:
        st.error(f"Collection **{info.name}** cannot be searched: its model could not be loaded. {err}")
        return
    st.sidebar.caption(
        f"Model **{encoder.name}** · {encoder.dim}-d vectors · weights {encoder.fingerprint[:12]}"
    )
    if encoder.description:
        # What the model knows ("emoji, not photos") is what to expect of its results.
        st.sidebar.caption(encoder.description)
    request = _query_inputs(collection, encoder)
    if request.empty:
        st.caption("Type a query or choose an image to search with.")
        return
    hits, done = _results(collection, request, info.count)
    if not hits:
        st.info("No images match this query and these filters. Try other words or widen the filters.")
        return
    with details:
        _details(collection)
    _grid(collection, request, hits)
    if not done:
        st.button("Load more", key="load_more", on_click=_next_page)


# ----- the sidebar: collection and filters -----
def _pick_collection(infos: list[state.CollectionInfo], settings: state.Settings) -> state.CollectionInfo:
    by_name = {info.name: info for info in infos}
    names = list(by_name)
    first = names.index(settings.collection) if settings.collection in by_name else 0
    name = st.sidebar.selectbox(
        "Collection", names, index=first, format_func=lambda n: by_name[n].label(), key="collection"
    )
    image = st.session_state.get("image_query")
    if image is not None and image.collection not in (None, name):
        st.session_state.image_query = None  # "more like this" of another collection's image
    return by_name[name]


def _filters() -> dict:
    sidebar = st.sidebar
    sidebar.subheader("Filters")
    folder = sidebar.text_input("Folder", key="folder", placeholder="/photos/2023/", help="path prefix")
    camera = sidebar.text_input("Camera", key="camera", placeholder="e.g. Pixel")
    dates = sidebar.date_input(
        "Taken between",
        value=(),
        min_value=date(1900, 1, 1),
        max_value=date(date.today().year + 1, 12, 31),
        key="dates",
        help="EXIF capture date; images without one are left out while this is set",
    )
    dates = tuple(dates) if isinstance(dates, tuple | list) else (dates,)
    return {
        "folder": folder,
        "camera": camera,
        "date_from": dates[0] if dates else None,
        "date_to": dates[-1] if dates else None,
    }


# ----- the query -----
def _query_inputs(collection: Collection, encoder: Encoder) -> SearchRequest:
    filters = _filters()
    text = st.text_input("Search", key="text", placeholder=PLACEHOLDER, label_visibility="collapsed")
    st.caption('Any language. A minus excludes: `beach -people`, `dog -"red ball":0.8` (weight 0–10).')
    with st.expander("Search by image", expanded=False):
        upload = st.file_uploader(
            f"An image (up to {query.MAX_UPLOAD_MB} MB)",
            type=UPLOAD_TYPES,
            key="upload",
            max_upload_size=query.MAX_UPLOAD_MB,
        )
        _take_upload(upload)
    image: ImageQuery | None = st.session_state.get("image_query")
    weight = 0.5
    if image is not None:
        _image_chip(collection, image)
        if text.strip():
            weight = st.slider(
                "Weight of the image against the text", 0.0, 1.0, 0.5, 0.05, key="image_weight"
            )
    if st.toggle("What the model reads", key="show_rendering", help="the query as the model sees it"):
        _model_views(encoder, text)
    return SearchRequest(collection.name, text, image, weight, **filters)


def _take_upload(upload: UploadedFile | None) -> None:
    current = st.session_state.get("image_query")
    if upload is None:
        if current is not None and current.pixels is not None:
            st.session_state.image_query = None  # the user removed the file
        st.session_state.upload_seen = None
        return
    if upload.file_id == st.session_state.get("upload_seen"):
        return
    st.session_state.upload_seen = upload.file_id
    try:
        st.session_state.image_query = query.read_upload(upload.name, upload.getvalue())
    except InputError as err:
        st.error(str(err))


def _image_chip(collection: Collection, image: ImageQuery) -> None:
    with st.container(border=True, horizontal=True, vertical_alignment="center", key="image_query_chip"):
        if image.pixels is not None:
            st.image(image.pixels, width=72)
        else:
            row = collection.image(image.image_id)
            thumb = row and thumbnails.thumbnail(collection, row.id, row.content_hash)
            if thumb:
                st.image(str(thumb), width=72)
        st.markdown(f"Searching with the image <bdi>{html.escape(image.label)}</bdi>", unsafe_allow_html=True)
        st.button("Clear image", key="clear_image", on_click=_clear_image)


def _model_views(encoder: Encoder, text: str) -> None:
    views = query.model_views(encoder, text)
    if not views:
        st.caption("Type a query to see it rendered as the model reads it.")
        return
    trim = " (the model reads only the patch rows that hold text)" if encoder.config.get("text_trim") else ""
    with st.container(key="model_views"):
        columns = st.columns(4)
        for i, view in enumerate(views):
            with columns[i % len(columns)]:
                st.image(view.pixels, width=224)
                st.markdown(_bidi_caption(f"{view.label}: {view.text}"), unsafe_allow_html=True)
    st.caption(f"Text is rendered to a {encoder.image_size}×{encoder.image_size} image{trim}.")


# ----- results -----
def _results(collection: Collection, request: SearchRequest, count: int) -> tuple[list[Hit], bool]:
    """The hits of the pages asked for so far; fetched page by page and kept while the query stands."""
    signature = (request.signature(), count)
    saved = st.session_state.get("results")
    if saved is None or saved["signature"] != signature:
        saved = {"signature": signature, "hits": [], "done": False}
        st.session_state.pages = 1
        st.session_state.selected = None
    wanted = st.session_state.get("pages", 1) * query.PAGE_SIZE
    missing = wanted - len(saved["hits"])
    if not saved["done"] and missing > 0:
        with st.spinner("Searching…"):
            new = query.run_search(collection, request, len(saved["hits"]), missing)
        saved["hits"] = saved["hits"] + new
        saved["done"] = len(new) < missing or len(saved["hits"]) >= count
    st.session_state.results = saved
    return saved["hits"], saved["done"]


def _grid(collection: Collection, request: SearchRequest, hits: list[Hit]) -> None:
    paths = thumbnails.thumbnails(collection, hits)
    names = [names_of(hit.path) for hit in hits]
    # The hits came from this text, so it parses.
    language = query_language(parse_query(request.text).text, names)
    with st.container(key="results"):
        st.markdown(
            _bidi_caption(_describe(request), prefix=f"{len(hits)} best matches for "), unsafe_allow_html=True
        )
        for start in range(0, len(hits), COLUMNS):
            columns = st.columns(COLUMNS)
            row = zip(hits[start : start + COLUMNS], paths[start:], names[start:], strict=False)
            for column, (hit, path, hit_names) in zip(columns, row, strict=False):
                with column:
                    _card(collection, hit, path, hit_names, language)


def _describe(request: SearchRequest) -> str:
    words = request.text.strip()
    if request.image is None:
        return words
    return f"{words} + image {request.image.label}" if words else f"image {request.image.label}"


def _card(
    collection: Collection,
    hit: Hit,
    thumb: Path | None,
    names: Names,
    language: str | None,
) -> None:
    if thumb is not None:
        st.image(str(thumb), width="stretch")
    else:
        st.markdown('<div class="pg-missing">image unavailable</div>', unsafe_allow_html=True)
    english = names.get("en", (_file_name(hit),))[0]
    st.markdown(_bidi_caption(english, prefix=f"<b>{hit.score:.3f}</b> · "), unsafe_allow_html=True)
    if language not in (None, "en") and language in names:
        st.markdown(_bidi_caption(names[language][0], prefix=f"{language}: "), unsafe_allow_html=True)
    with st.container(horizontal=True, gap="small"):
        st.button(
            "Details",
            key=f"details-{hit.image_id}",
            on_click=_select,
            args=(hit.image_id,),
            type="tertiary",
            icon=":material/info:",
        )
        st.button(
            "More like this",
            key=f"like-{hit.image_id}",
            on_click=_more_like,
            args=(collection, hit),
            type="tertiary",
            icon=":material/image_search:",
        )


def _details(collection: Collection) -> None:
    selected = st.session_state.get("selected")
    hit = next((h for h in st.session_state.results["hits"] if h.image_id == selected), None)
    if hit is None:
        return
    with st.container(border=True, key="details"):
        preview = thumbnails.thumbnail(
            collection, hit.image_id, str(hit.metadata.get("content_hash", "")), thumbnails.PREVIEW_SIZE
        )
        if preview is not None:
            st.image(str(preview))
        else:
            st.warning("The file is missing or has changed since it was indexed.")
        st.markdown(_bidi_caption(_file_name(hit), prefix="<b>File:</b> "), unsafe_allow_html=True)
        st.markdown(_metadata_lines(hit), unsafe_allow_html=True)
        with st.container(horizontal=True):
            st.button("More like this", key="details-like", on_click=_more_like, args=(collection, hit))
            st.button("Close", key="details-close", on_click=_select, args=(None,))


def _metadata_lines(hit: Hit) -> str:
    meta = hit.metadata
    rows = [("Folder", printable(os.path.dirname(hit.path))), ("Score", f"{hit.score:.4f}")]
    if meta.get("width"):
        rows.append(("Size", f"{meta['width']} × {meta['height']} px, {meta.get('size', 0) / 1024:,.0f} KiB"))
    if meta.get("taken_at"):
        rows.append(("Taken", str(meta["taken_at"]).replace("T", " ")))
    if meta.get("camera"):
        rows.append(("Camera", meta["camera"]))
    if meta.get("gps"):
        rows.append(("GPS", ", ".join(f"{v:.5f}" for v in meta["gps"])))
    lines = "<br>".join(f"<b>{name}:</b> <bdi>{html.escape(str(value))}</bdi>" for name, value in rows)
    return f'<div class="pg-caption">{lines}</div>'


def _file_name(hit: Hit) -> str:
    return printable(os.path.basename(hit.path))


def _bidi_caption(text: str, prefix: str = "") -> str:
    """A caption whose own text sets its direction (Arabic, Hebrew and Persian names read right to left)."""
    return f'<div class="pg-caption">{prefix}<bdi dir="auto">{html.escape(text)}</bdi></div>'


# ----- callbacks (run before the next rerun, so they may set widget values) -----
def _next_page() -> None:
    st.session_state.pages = st.session_state.get("pages", 1) + 1


def _select(image_id: int | None) -> None:
    st.session_state.selected = image_id


def _clear_image() -> None:
    st.session_state.image_query = None


def _more_like(collection: Collection, hit: Hit) -> None:
    st.session_state.image_query = query.indexed_image(collection, hit.image_id, _file_name(hit))
    st.session_state.text = ""
    st.session_state.selected = None
