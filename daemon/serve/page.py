"""The status page: one self-contained HTML page and its script at `/` (no CDN, no build
step), which polls /api/status and plays renders from /api/renders/<voice>/<file>.

The page's files hold no data, so they answer without serve.api_key (a browser cannot send
a bearer token when it opens a page): what needs the key is what they read.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from daemon.core.paths import Root, VoiceNameError
from daemon.report.status import read_json_object
from daemon.serve.refusal import Refused

PAGE_FILES = {"/": ("index.html", "text/html"), "/page.js": ("page.js", "text/javascript")}
# book/encode.py's formats: opus is written in an Ogg container, m4a and m4b are MP4
MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".m4b": "audio/mp4",
}
# The page's script is its own file, so nothing inline runs: injected markup would not either.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
    "media-src 'self' blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def page_file(request: Request) -> Response:
    """`/` and `/page.js`, read at each request (small, and an edit shows on reload)."""
    name, media_type = PAGE_FILES[request.url.path]
    body = (resources.files("daemon.serve") / "static" / name).read_bytes()
    headers = {"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"}
    return Response(body, media_type=media_type, headers=headers)


def render_audio(root: Root, request: Request) -> Response:
    """A render's audio with Range support (seeking in a long book), only when it is one:
    the sidecar beside its text names it. Nothing else in outbox/ is served."""
    path = rendered_file(root, request.path_params["voice"], request.path_params["file"])
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix.lower()])


def rendered_file(root: Root, voice: str, name: str) -> Path:
    try:
        folder = root.voice(voice).outbox
    except VoiceNameError as exc:
        raise Refused(400, str(exc), "invalid_voice") from None
    problem = root.voice_folder_problem(folder)
    if problem:
        raise Refused(404, f"voice folder {voice!r} is refused: {problem}", "not_found")
    audio = folder / name
    if (
        name.startswith(".")
        or audio.suffix.lower() not in MEDIA_TYPES
        or read_json_object(audio.with_suffix(".json")).get("output") != name
        or audio.is_symlink()
        or not audio.is_file()
    ):
        raise Refused(404, f"no render {name!r} in outbox/{voice}/", "not_found")
    return audio
