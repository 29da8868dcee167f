"""The REST paths of the Cloud Recording API (docs/service/api-contract.md), as templates.

Placeholders are ``{appid}``, ``{resourceid}``, ``{sid}`` and ``{mode}``: the emulator routes on
the templates as written (FastAPI path parameters), the client fills them in with
``str.format``. Every path is relative to the service's base URL.
"""

from __future__ import annotations

BASE = "/v1/apps/{appid}/cloud_recording"
ACQUIRE = BASE + "/acquire"
RESOURCE = BASE + "/resourceid/{resourceid}"
START = RESOURCE + "/mode/{mode}/start"
TASK = RESOURCE + "/sid/{sid}/mode/{mode}"
QUERY = TASK + "/query"
UPDATE = TASK + "/update"
UPDATE_LAYOUT = TASK + "/updateLayout"
STOP = TASK + "/stop"
NCS_IP = "/v1/ncs/ip"  # the addresses NCS posts from

REQUEST_ID_HEADER = "X-Request-Id"  # on every answer, errors included

MODE_MIX = "mix"  # composite mode, the one cloudrec records in
MODES = ("mix", "individual", "web")
