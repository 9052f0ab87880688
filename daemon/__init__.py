"""voicedrop: a file-watching daemon that clones voices with TorToiSe-TTS."""

__version__ = "0.1.0"
