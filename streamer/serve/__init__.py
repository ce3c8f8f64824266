"""The live server: a browser page, WebRTC offers with a data channel, WHIP ingest with
SSE answers. The only code in the project that imports aiohttp and aiortc.

    streamer serve --port 8080          # then open http://127.0.0.1:8080/
"""
