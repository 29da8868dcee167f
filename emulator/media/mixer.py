"""Audio mix: every publishing user's source at 48 kHz, summed and clipped."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emulator.media.audio_sources import AudioReader, Samples, make_reader
from emulator.media.models import AudioSource, UserSnapshot


class Mixer:
    """Keeps one reader per present user (so a file resumes where it paused) and mixes."""

    def __init__(self, channels: int) -> None:
        self._channels = channels
        self._readers: dict[str, tuple[AudioSource, AudioReader]] = {}
        self._active: list[AudioReader] = []

    def update(self, users: Sequence[UserSnapshot]) -> None:
        """Apply the channel state: who is present and who publishes audio now."""
        present = {user.uid for user in users}
        for uid in [uid for uid in self._readers if uid not in present]:
            self._readers.pop(uid)[1].close()
        self._active = []
        for user in users:
            if user.audio is None:
                continue
            known = self._readers.get(user.uid)
            if known is None or known[0] != user.audio:
                if known is not None:
                    known[1].close()
                known = (user.audio, make_reader(user.audio, self._channels))
                self._readers[user.uid] = known
            self._active.append(known[1])

    def mix(self, start_sample: int, count: int) -> Samples:
        """`count` mixed samples from recording sample `start_sample`, shape (channels, count)."""
        block = np.zeros((self._channels, count), dtype=np.float32)
        for reader in self._active:
            block += reader.read(start_sample, count)
        np.clip(block, -1.0, 1.0, out=block)
        return block

    def close(self) -> None:
        for _, reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self._active = []
