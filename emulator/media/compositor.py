"""Draw one canvas frame: background, then each region's user per the
docs/service/behaviour.md#canvas rules.

What a region shows, for a user present in the channel:
- publishing video: the live picture;
- video stopped (muted/unpublished) less than 3.5 s ago: the last frame, held;
- after 3.5 s: the user's backgroundConfig image, else defaultUserBackgroundImage, else the
  canvas (its backgroundImage, or colour), else (no image configured at all) the last frame;
- never published video: the canvas background (transparent for floating tiles) and, after
  3.5 s, the user's image if one is configured.
A user who left has no region at all (the layout shifts the others).
"""

from __future__ import annotations

from collections.abc import Sequence

from emulator.media.canvas import Canvas, Rect
from emulator.media.colors import hex_to_yuv
from emulator.media.images import ImageStore
from emulator.media.layout import RENDER_CROP, Region, regions_for
from emulator.media.models import LayoutSpec, UserSnapshot, VideoSource
from emulator.media.video_sources import VideoRenderer, make_renderer

HOLD_SECONDS = 3.5


class VideoTrack:
    """One present user's video state over time."""

    def __init__(self, uid: str, joined_at: float) -> None:
        self.uid = uid
        self.joined_at = joined_at
        self.live = False
        self.renderer: VideoRenderer | None = None
        self._renderer_source: VideoSource | None = None
        self.started_at = joined_at  # when the renderer's source started
        self.stopped_at: float | None = None
        self.last_source_time = 0.0  # source time of the last live frame drawn

    def update(self, source: VideoSource | None, t: float) -> None:
        """Apply the user's publishing state from media time `t` on."""
        if source is None:
            if self.live:
                self.live = False
                self.stopped_at = t
            return
        if source != self._renderer_source:
            self.close()
            self.renderer = make_renderer(source)
            self._renderer_source = source
            self.started_at = t
            self.last_source_time = 0.0
        elif not self.live:
            # Publishing the same source again resumes it where it paused (as the audio of a
            # file does), instead of decoding through everything missed in one frame.
            self.started_at = t - self.last_source_time
        self.live = True
        self.stopped_at = None

    def idle_seconds(self, t: float) -> float:
        """How long the user has shown no live video (since joining if never)."""
        since = self.stopped_at if self.stopped_at is not None else self.joined_at
        return t - since

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        self.renderer = None
        self._renderer_source = None


class Compositor:
    """Owns the canvas, the layout and every present user's video track."""

    def __init__(
        self, width: int, height: int, layout: LayoutSpec, images: ImageStore, buffers: int = 1
    ) -> None:
        self.canvas = Canvas(width, height, buffers)
        self._images = images
        self._tracks: dict[str, VideoTrack] = {}
        self._order: tuple[str, ...] = ()
        self._regions: list[Region] = []
        self._layout = layout
        self._background_ready = False
        self.set_layout(layout)

    def set_layout(self, layout: LayoutSpec) -> None:
        """Replace the whole layout (updateLayout semantics) and start loading its images."""
        self._layout = layout
        self._user_images = {bg.uid: bg for bg in layout.user_backgrounds}
        for ref in self._image_refs(layout):
            self._images.request(ref)
        self._build_background()
        self._regions = self._compute_regions()

    def update(self, users: Sequence[UserSnapshot], t: float) -> None:
        """Apply the channel state (join-ordered users) from media time `t` on."""
        present = {user.uid for user in users}
        for uid in [uid for uid in self._tracks if uid not in present]:
            self._tracks.pop(uid).close()
        for user in users:
            track = self._tracks.get(user.uid)
            if track is None:
                track = self._tracks[user.uid] = VideoTrack(user.uid, t)
            track.update(user.video, t)
        order = tuple(user.uid for user in users)
        if order != self._order:
            self._order = order
            self._regions = self._compute_regions()

    def compose(self, t: float) -> Canvas:
        """Draw the frame for media time `t` and return the canvas holding it."""
        if not self._background_ready:
            self._build_background()
        self.canvas.reset()
        for region in self._regions:
            self._draw_region(region, t)
        self.canvas.finish()
        return self.canvas

    @property
    def regions(self) -> list[Region]:
        return list(self._regions)

    def close(self) -> None:
        for track in self._tracks.values():
            track.close()
        self._tracks.clear()

    def _compute_regions(self) -> list[Region]:
        return regions_for(self._layout, self._order, self.canvas.width, self.canvas.height)

    def _build_background(self) -> None:
        image = None
        ref = self._layout.background_image
        if ref is not None:
            image = self._images.picture(ref, self.canvas.width, self.canvas.height, RENDER_CROP)
        # Until a downloading image arrives, keep checking once per frame.
        self._background_ready = ref is None or image is not None or self._images.failed(ref)
        self.canvas.set_background(hex_to_yuv(self._layout.background_color), image)

    def _draw_region(self, region: Region, t: float) -> None:
        track = self._tracks[region.uid]
        rect = Rect(region.x, region.y, region.width, region.height)
        if track.live and track.renderer is not None:
            track.last_source_time = t - track.started_at
            track.renderer.draw(
                self.canvas, rect, region.render_mode, region.alpha, track.last_source_time
            )
            return
        if track.idle_seconds(t) >= HOLD_SECONDS and self._draw_placeholder(region, rect):
            return
        if track.renderer is not None:  # hold the last frame
            track.renderer.draw(
                self.canvas, rect, region.render_mode, region.alpha, track.last_source_time
            )
        elif region.show_background_when_empty:
            self.canvas.restore_background(rect)

    def _draw_placeholder(self, region: Region, rect: Rect) -> bool:
        """Draw the user's or default user image, or the canvas image; False if none."""
        user_image = self._user_images.get(region.uid)
        candidates = []
        if user_image is not None:
            candidates.append((user_image.image, user_image.render_mode))
        if self._layout.default_user_background_image is not None:
            candidates.append((self._layout.default_user_background_image, RENDER_CROP))
        for ref, mode in candidates:
            picture = self._images.picture(ref, rect.width, rect.height, mode)
            if picture is not None:
                self.canvas.blit(picture, rect, region.alpha)
                return True
        canvas_image = self._layout.background_image
        if canvas_image is not None and self._images.frame(canvas_image) is not None:
            if region.show_background_when_empty:
                self.canvas.restore_background(rect)
            return True
        return False

    @staticmethod
    def _image_refs(layout: LayoutSpec) -> list[str]:
        refs = [bg.image for bg in layout.user_backgrounds]
        refs += [
            ref
            for ref in (layout.background_image, layout.default_user_background_image)
            if ref is not None
        ]
        return refs
