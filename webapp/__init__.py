"""The studio's web app: Gradio UI, WebSocket/REST/OpenAI APIs, built on `engine/`,
`voices_db/` and `ingest/`. `app.py` wires these parts together; each file here does one job:

    model_host.py   the TTS model, loaded in the background; its state and the engine worker
    voices.py       the voice library as the app uses it (search, ingest, temp clips, prompts)
    audio_out.py    PCM encoding/resampling for clients, WAV headers, ffmpeg encoders
    auth.py         API_TOKEN, rate limits, upload size limits
    ws_speak.py     WS /api/v1/speak (the seed protocol)
    api_voices.py   /api/v1/voices REST
    api_openai.py   POST /v1/audio/speech
    server.py       the FastAPI app: routes, static files, /healthz, Gradio mounted at /
    ui.py, ui_speak.py, ui_voices.py   the Gradio studio (one builder per tab)
    static/player.js  the in-page Web Audio player fed raw PCM over the WebSocket
"""
