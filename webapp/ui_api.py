"""The API tab: how programs talk to this server (the same engine queue as the studio)."""
from __future__ import annotations

import gradio as gr

from webapp.model_host import ModelHost

API_MD = """
### Programs use the same server

**Streaming WebSocket** `ws://HOST/api/v1/speak` (the seed protocol): on connect you get
`ready`; send `{"type": "start", "sampleRate": 24000, "encoding": "pcm16", "voice": "<id>"}`,
then `{"type": "speak", "text": "Hello!"}`; binary frames carry raw PCM, then `complete`.
`{"type": "cancel"}` stops the current speech within one frame; `{"type": "stop"}` ends the session.

```python
import asyncio, json, websockets

async def main():
    async with websockets.connect("ws://127.0.0.1:7860/api/v1/speak") as ws:
        print(json.loads(await ws.recv()))                      # ready
        await ws.send(json.dumps({"type": "start", "encoding": "pcm16"}))
        await ws.send(json.dumps({"type": "speak", "text": "Hello from the studio."}))
        pcm = b""
        while True:
            msg = await ws.recv()
            if isinstance(msg, bytes):
                pcm += msg                                      # 24 kHz int16 mono
            elif json.loads(msg)["type"] in ("complete", "error"):
                break

asyncio.run(main())
```

**OpenAI-compatible speech** `POST /v1/audio/speech`, streamed:

```bash
curl http://127.0.0.1:7860/v1/audio/speech -H 'Content-Type: application/json' \\
  -d '{"model": "qwen3-tts", "input": "Hello!", "voice": "<id>", "response_format": "mp3"}' -o hello.mp3
```

**Voices** `GET /api/v1/voices`, `POST /api/v1/voices` (multipart `audio`, optional
`transcript`, `name`), `GET|PATCH|DELETE /api/v1/voices/{id}`, `GET /api/v1/voices/{id}/audio`.

**Health** `GET /healthz`: model state, device, queue. OpenAPI: [/api/docs](api/docs).
With `API_TOKEN` set, send `Authorization: Bearer <token>` (WebSocket: `authToken` in `start`).
"""


def build_api_tab(host: ModelHost) -> None:
    """Build the tab inside the current Blocks context."""
    gr.Markdown(API_MD, elem_id="api-doc")
    gr.JSON(value=host.status, label="GET /healthz (model part, refreshed on page load)", elem_id="api-health")
