"""``cloudrec web``: a small page to watch and find recordings (docs/operations.md).

:mod:`worker.web.app` serves it: the jobs list at ``/``, a page per job with its player, the
JSON both poll, the recordings' files and the vendored assets (``static/``: the page's script,
its style and hls.js, with its licence). :mod:`worker.web.pages` renders the HTML,
:mod:`worker.web.media` says which files of a job may be served and reads them from storage,
:mod:`worker.web.access` holds the basic auth and the rule on where the page may listen.

``static/hls.min.js`` is hls.js 1.7.4's ``dist/hls.min.js`` from the npm registry, unmodified,
and ``static/hls.min.js.LICENSE`` its licence (Apache-2.0). To update it:
``npm pack hls.js@VERSION``, then copy ``package/dist/hls.min.js`` and ``package/LICENSE``.
"""
