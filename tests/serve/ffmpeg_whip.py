"""FFmpeg's own WHIP muxer (the `whip` format of the FFmpeg 8 inside PyAV's wheel) publishing a
world clip in real time: a WHIP client nobody on this project wrote.

    python ffmpeg_whip.py URL CLIP.npz HOLD_S [CERT.pem KEY.pem]    (CLIP.npz: frames, fps, audio, rate)

H.264 (baseline, no B-frames) and Opus, what the muxer accepts. Its offer carries no ICE
candidates: the server finds it through the answer's candidates (peer-reflexive). When the
muxer closes it DELETEs its resource. Exits 0 after a clean close, 3 when FFmpeg fails.

The certificate: this FFmpeg (TLS through GnuTLS) makes its self-signed DTLS key at GnuTLS's
"medium" security level, i.e. on secp224r1, and OpenSSL (under aiortc) refuses a peer key on a
curve outside its TLS groups (alert "illegal parameter"); OpenSSL 4 has dropped P-224 from TLS,
so no server setting can accept it. A P-256 certificate passed as `cert_file`/`key_file` works.
"""

from __future__ import annotations

import datetime
import fractions
import logging
import sys
import time
from pathlib import Path

import av
import numpy as np

AUDIO_RATE = 48000  # Opus in WebRTC
FRAME_S = 0.02  # one audio frame
SCALE = 2  # the clip's 64x64 frames sent as 128x128


def p256_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate and key (PEM) for the muxer's DTLS."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ffmpeg-whip-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "whip-cert.pem", folder / "whip-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def publish(url: str, frames: np.ndarray, fps: float, audio: np.ndarray, rate: int, hold_s: float,
            cert: Path | None, key: Path | None) -> None:
    """Stream the clip, then its last frame and silence for `hold_s`, paced like a camera."""
    options = {"cert_file": str(cert), "key_file": str(key)} if cert and key else {}
    out = av.open(url, "w", format="whip", options=options)
    video_out = out.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1000))
    video_out.width, video_out.height, video_out.pix_fmt = frames.shape[2] * SCALE, frames.shape[1] * SCALE, "yuv420p"
    video_out.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "bf": "0",
                     "g": str(round(fps))}
    audio_out = out.add_stream("libopus", rate=AUDIO_RATE)
    audio_out.layout, audio_out.bit_rate = "stereo", 64000
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    step = round(rate * FRAME_S)
    n_audio = round((len(pcm) / rate + hold_s) / FRAME_S)
    out.start_encoding()  # the WHIP exchange, ICE and DTLS happen here; pacing starts after them
    start, n_video = time.perf_counter(), 0
    for n in range(n_audio):
        t = n * FRAME_S
        while n_video / fps <= t:
            rgb = frames[min(n_video, len(frames) - 1)].repeat(SCALE, 0).repeat(SCALE, 1)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
            frame.pts = n_video
            out.mux(video_out.encode(frame))
            n_video += 1
        block = np.zeros(step, np.int16)
        chunk = pcm[n * step:(n + 1) * step]
        block[:len(chunk)] = chunk
        # the clip's own 16 kHz mono: PyAV's encoder resamples it (FFmpeg's swr) to 48 kHz stereo;
        # linear interpolation instead changes what the bundled model hears (silence as "chirp")
        frame = av.AudioFrame.from_ndarray(block[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, n * step, fractions.Fraction(1, rate)
        out.mux(audio_out.encode(frame))
        delay = start + t + FRAME_S - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    out.close()  # flushes the encoders and DELETEs the WHIP resource


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    av.logging.set_level(av.logging.WARNING)  # FFmpeg's own words on stderr
    url, clip_path, hold_s = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    cert, key = (Path(sys.argv[4]), Path(sys.argv[5])) if len(sys.argv) > 5 else (None, None)
    clip = np.load(clip_path)
    try:
        publish(url, clip["frames"], float(clip["fps"]), clip["audio"], int(clip["rate"]), hold_s, cert, key)
    except OSError as exc:  # av.FFmpegError: what the muxer said
        print(f"ffmpeg whip failed: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
