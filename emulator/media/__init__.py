"""The emulator's compositor: simulated users in, Agora-style composite recording files out.

Pipeline, per recording (one `CompositeRecorder`):

    sources        each user's VideoSource (colour pattern / looping file, `video_sources`)
                   and AudioSource (sine tone / looping file, `audio_sources`)
      -> layout    `layout.regions_for`: the join-ordered users' pixel rectangles for the
                   layout (0 floating, 1 best fit, 2 vertical, 3 custom), at most 17
      -> canvas    `compositor`: a YUV 4:2:0 canvas reset from a precomputed background
                   (colour + backgroundImage) and drawn region by region with numpy; files
                   and images are scaled by swscale (`pictures`); the 3.5 s last-frame hold
                   and background-image rules of docs/service/behaviour.md#canvas decide what an
                   idle region shows
      -> audio mix `mixer`: every publishing user's 48 kHz samples summed and clipped
      -> encoders  `encoding`: ONE libx264 (CBR, IDR forced at each slice boundary) and ONE
                   AAC encoder per recording, each on its own thread fed in batches
                   (`encoder_thread`), so composing and encoding overlap
      -> muxers    `outputs`: the same packets go to the current MPEG-TS slice and the
                   current MP4 (encode once, mux twice); the M3U8 (`playlist`) is rewritten
                   whenever a slice closes
      -> on_file   the callback sees every completed TS slice and MP4 and each M3U8 rewrite,
                   so the storage back-end can upload it

`CompositeRecorder.advance_to(t, users)` drives the media clock (wall time for live
recordings, as fast as possible for `render_scenario`). `media_config_from_api` and
`layout_spec_from_api` turn the REST API's JSON into the dataclasses used here.
"""

from contract.naming import sanitize_cname
from emulator.media.api_config import layout_spec_from_api, media_config_from_api
from emulator.media.layout import Region, regions_for
from emulator.media.models import (
    AudioSource,
    BackgroundImageSpec,
    LayoutRegionSpec,
    LayoutSpec,
    MediaConfig,
    OutputFile,
    UserSnapshot,
    VideoSource,
)
from emulator.media.recorder import CompositeRecorder
from emulator.media.render import render_scenario

__all__ = [
    "AudioSource",
    "BackgroundImageSpec",
    "CompositeRecorder",
    "LayoutRegionSpec",
    "LayoutSpec",
    "MediaConfig",
    "OutputFile",
    "Region",
    "UserSnapshot",
    "VideoSource",
    "layout_spec_from_api",
    "media_config_from_api",
    "regions_for",
    "render_scenario",
    "sanitize_cname",
]
