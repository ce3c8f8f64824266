"""Sources: real files encoded here with PyAV, lavfi devices, the microphone callback, arrays."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from model.media import MEDIA_PRESETS
from streamer.chunker import Chunker
from streamer.media import AudioBlock, VideoFrame
from streamer.sources import Arrays, Camera, File, Microphone, SourceError

REPO = Path(__file__).resolve().parents[2]


def split(items):
    frames = [i for i in items if isinstance(i, VideoFrame)]
    blocks = [i for i in items if isinstance(i, AudioBlock)]
    return frames, blocks


@pytest.mark.parametrize(
    "name, video, audio, container",
    [
        ("clip.mp4", "libx264", "aac", None),
        ("clip.webm", "libvpx", "libopus", None),
        ("clip.mkv", "libx264", "flac", None),
        ("clip.wav", None, "pcm_s16le", None),
        ("video_only.mp4", "libx264", None, None),
        ("audio_only.m4a", None, "aac", "mp4"),
    ],
)
def test_file_decodes_every_container_in_time_order(tmp_path, media, name, video, audio, container):
    path = media.encode(tmp_path / name, seconds=1.0, video=video, audio=audio, container=container)
    with File(path) as source:
        assert not source.is_live
        assert source.tracks == {kind for kind, codec in (("video", video), ("audio", audio)) if codec}
        items = list(source)
    stamps = [item.t for item in items]
    assert stamps == sorted(stamps)
    frames, blocks = split(items)
    assert len(frames) == (25 if video else 0)
    if video:
        assert frames[0].rgb.shape == (64, 96, 3) and frames[0].rgb.dtype == np.uint8
        np.testing.assert_allclose(frames[0].rgb.reshape(-1, 3).mean(0), media.frame_colour(0), atol=6)
        np.testing.assert_allclose([f.t for f in frames], np.arange(25) / 25, atol=1e-3)
    if audio:
        assert all(b.channels == 2 and b.pcm.ndim == 2 and b.pcm.shape[1] == 2 for b in blocks)
        total = sum(len(b.pcm) for b in blocks) / blocks[0].rate
        assert 0.95 < total < 1.1


def test_variable_frame_rate_keeps_each_frames_own_time(tmp_path, media):
    times = [0.0, 0.03, 0.05, 0.2, 0.21, 0.5, 0.9]
    path = media.encode(tmp_path / "vfr.mkv", seconds=1.0, audio=None, frame_times=times)
    frames, _ = split(list(File(path)))
    np.testing.assert_allclose([f.t for f in frames], times, atol=1e-3)


def test_file_through_chunker_matches_the_rendered_signal(tmp_path, media):
    path = media.encode(tmp_path / "clip.mp4", seconds=2.0)
    snippets = list(Chunker(MEDIA_PRESETS["tiny"]).snippets(File(path)))
    assert [s.index for s in snippets] == [0, 1, 2, 3]
    for s in snippets[:3]:
        assert not s.video_filled and not s.audio_filled
        for j, frame in enumerate(s.video):  # slot j of snippet k shows input frame 2·(8k + j) at 25 fps
            expected = media.frame_colour(2 * (8 * s.index + j))
            np.testing.assert_allclose(frame.reshape(-1, 3).mean(0), expected, atol=6)
    audio = np.concatenate([s.audio for s in snippets[:3]])
    expected = media.tone(0, len(audio), 16000)
    # AAC is lossy and may shift the start by its priming; the tone must still line up closely
    lag = int(np.argmax(np.correlate(audio[2000:6000], expected[2000 - 40 : 6000 + 40], mode="valid"))) - 40
    assert abs(lag) <= 2
    aligned = expected[2000 + lag : 28000 + lag]
    assert np.sqrt(np.mean((audio[2000:28000] - aligned) ** 2)) < 0.02


def _threads_while_decoding(path: Path) -> int:
    """OS threads the process gained while a File decodes (ffmpeg's helpers are not Python threads)."""
    before = len(list(Path("/proc/self/task").iterdir()))
    with File(path) as source:
        items = iter(source)
        next(items)
        during = len(list(Path("/proc/self/task").iterdir()))
        list(items)
    return during - before


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux's /proc")
def test_small_frames_decode_in_the_reading_thread_and_large_ones_use_helpers(tmp_path, media):
    """Helper threads cost a small frame more than its decoding, and on a busy machine (many
    streams on few cores) every frame waited for a helper to be scheduled."""
    small = media.encode(tmp_path / "camera.mp4", seconds=0.2, size=(320, 240))
    assert _threads_while_decoding(small) == 0
    if len(os.sched_getaffinity(0)) > 1:  # ffmpeg sizes its pool by the cores
        large = media.encode(tmp_path / "large.mp4", seconds=0.2, size=(1280, 720))
        assert _threads_while_decoding(large) > 0


def test_start_offset_skips_what_comes_before(tmp_path, media):
    path = media.encode(tmp_path / "clip.mp4", seconds=2.0)
    frames, blocks = split(list(File(path, start=1.0)))
    assert frames[0].t == pytest.approx(1.0, abs=1e-6) and len(frames) == 25
    assert blocks[0].t == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(frames[0].rgb.reshape(-1, 3).mean(0), media.frame_colour(25), atol=6)


def test_realtime_paces_to_the_wall_clock(tmp_path, media):
    path = media.encode(tmp_path / "clip.webm", seconds=0.6, video="libvpx", audio="libopus")
    source = File(path, realtime=True)
    assert source.is_live
    started = time.monotonic()
    items = list(source)
    elapsed = time.monotonic() - started
    assert elapsed >= items[-1].t - items[0].t - 0.02
    assert elapsed < 2.0


def test_broken_files_give_errors_naming_the_file(tmp_path, media):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(SourceError, match="missing.mp4"):
        File(missing)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match="garbage.mp4"):
        list(File(garbage))
    whole = media.encode(tmp_path / "whole.mp4", seconds=1.0).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceError, match="truncated.mp4"):
        list(File(truncated))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty.wav"):
        list(File(empty))


def test_corrupt_packets_are_skipped_counted_and_decoding_goes_on(tmp_path, media):
    whole = media.encode(tmp_path / "clip.mp4", seconds=6.0)
    clean, damaged = File(whole), File(media.corrupt(whole))  # a few kB of garbage mid-file
    good, items = list(clean), list(damaged)
    assert clean.corrupt_packets == 0 and damaged.corrupt_packets > 0
    assert items[-1].t == pytest.approx(good[-1].t), "decoding stopped at the corrupt bytes"
    assert len(items) > 0.9 * len(good)
    frames, _ = split(items)
    assert np.diff([f.t for f in frames]).min() > 0


def test_metadata_that_is_not_utf8_does_not_stop_a_file(tmp_path, media):
    """A damaged tag (bytes that are not UTF-8 in a stream's handler name) made opening the file
    raise UnicodeDecodeError from deep inside PyAV; found by tests/fuzz/test_fuzz_media.py."""
    path = media.encode(tmp_path / "clip.mp4", seconds=1.0)
    data = path.read_bytes()
    assert b"VideoHandler" in data
    damaged = tmp_path / "bad-tag.mp4"
    damaged.write_bytes(data.replace(b"VideoHandler", b"Video\xb1andler"))
    good, items = list(File(path)), list(File(damaged))
    assert len(items) == len(good) and items[-1].t == pytest.approx(good[-1].t)


def test_a_file_none_of_whose_packets_decode_is_an_error(tmp_path, media):
    path = media.encode(tmp_path / "video.mp4", seconds=1.0, audio=None)
    data = path.read_bytes()
    broken = media.corrupt(path, start=data.find(b"mdat") + 68, end=data.find(b"moov") - 4, seed=1)
    source = File(broken)
    with pytest.raises(SourceError, match="none of its .* packets could be decoded"):
        list(source)
    assert source.corrupt_packets > 0


def test_camera_opens_lavfi_video_and_audio():
    with Camera("testsrc=size=160x120:rate=25", format="lavfi", max_seconds=0.5) as camera:
        assert camera.is_live
        frames, blocks = split(list(camera))
    assert len(frames) == 13 and not blocks
    assert frames[0].rgb.shape == (120, 160, 3)
    np.testing.assert_allclose([f.t for f in frames], np.arange(13) / 25)

    graph = "testsrc=size=64x48:rate=30[out0];sine=frequency=1000:sample_rate=44100[out1]"
    items = list(Camera(graph, format="lavfi", max_seconds=1.0))
    frames, blocks = split(items)
    assert len(frames) == 30 and blocks[0].rate == 44100
    assert [i.t for i in items] == sorted(i.t for i in items)
    pcm = np.concatenate([b.pcm[:, 0] for b in blocks]).astype(np.float64) / 32768
    spectrum = np.abs(np.fft.rfft(pcm[:44100 // 2]))
    assert np.argmax(spectrum) * 2 == pytest.approx(1000, abs=2)  # bin width 2 Hz


def test_camera_errors_name_the_device():
    with pytest.raises(SourceError, match="/dev/video-none.*v4l2-ctl"):
        Camera("/dev/video-none", format="v4l2")
    with pytest.raises(SourceError, match="notafilter"):
        Camera("notafilter=size=8x8", format="lavfi")
    with pytest.raises(ValueError, match="lavfi graph"):
        Camera("testsrc", format="lavfi", size=(64, 48))


class _AdcClock(SimpleNamespace):
    """The `time` struct PortAudio hands the callback."""


def test_microphone_callback_stamps_copies_and_counts_overflows():
    import sounddevice as sd

    mic = Microphone(rate=16000, channels=2, block=256, queue_seconds=256 * 3 / 16000)
    quiet = sd.CallbackFlags()
    block = np.zeros((256, 2), np.float32)
    for i in range(3):
        block[:] = i / 10
        mic._callback(block, 256, _AdcClock(inputBufferAdcTime=100.0 + i * 0.016), quiet)
    block[:] = 0.9  # PortAudio reuses its buffer: the queued blocks must be copies
    blocks = mic.drain()
    assert [b.t for b in blocks] == pytest.approx([0.0, 0.016, 0.032])
    assert [float(b.pcm[0, 0]) for b in blocks] == pytest.approx([0.0, 0.1, 0.2])
    assert all(b.rate == 16000 and b.channels == 2 and b.pcm.shape == (256, 2) for b in blocks)

    for i in range(5):  # two more than the queue holds, the last one flagged by PortAudio too
        status = sd.CallbackFlags(sd._lib.paInputOverflow) if i == 4 else quiet
        mic._callback(block, 256, _AdcClock(inputBufferAdcTime=100.048 + i * 0.016), status)
    assert mic.overflows == 3
    with pytest.warns(RuntimeWarning, match="lost to overflow"):
        assert len(mic.drain()) == 3

    no_adc = Microphone(rate=8000, channels=1, block=80)
    for _ in range(2):  # host APIs without ADC times: stamps count samples
        no_adc._callback(np.zeros((80, 1), np.float32), 80, _AdcClock(inputBufferAdcTime=0.0), quiet)
    assert [b.t for b in no_adc.drain()] == [0.0, 0.01]


def test_microphone_without_an_input_device_says_so():
    import sounddevice as sd

    try:
        sd.query_devices(kind="input")
        pytest.skip("this machine has an input device")
    except sd.PortAudioError:
        pass
    with pytest.raises(SourceError, match="Input devices: none found"):
        Microphone().start()


@pytest.mark.parametrize(
    "blocker, message",
    [
        ("sys.modules['sounddevice'] = None", "pip install 'streamer\\[mic\\]'"),
        ("raise_oserror", "apt-get install libportaudio2"),
    ],
)
def test_microphone_without_sounddevice_or_portaudio_names_the_fix(tmp_path, blocker, message):
    if blocker == "raise_oserror":  # what sounddevice itself raises when libportaudio is missing
        (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
        blocker = ""
    script = textwrap.dedent(f"""
        import sys
        {blocker}
        from streamer.sources import Microphone, SourceError
        try:
            Microphone()
        except SourceError as error:
            print(error)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120,
        env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert __import__("re").search(message, result.stdout), result.stdout


def test_arrays_yield_frames_and_blocks_in_time_order():
    video = np.zeros((10, 8, 8, 3), np.uint8)
    audio = np.zeros((16000, 2), np.int16)
    source = Arrays(video=video, fps=10, audio=audio, rate=16000, t0=5.0, block=4000)
    items = list(source)
    assert not source.is_live
    frames, blocks = split(items)
    assert [f.t for f in frames] == pytest.approx(5.0 + np.arange(10) / 10)
    assert [b.t for b in blocks] == [5.0, 5.25, 5.5, 5.75]
    assert [i.t for i in items] == sorted(i.t for i in items)
    with pytest.raises(ValueError, match="fps"):
        Arrays(video=video)
    with pytest.raises(ValueError, match="uint8"):
        Arrays(video=video.astype(np.float32), fps=10)


def test_a_wav_without_samples_and_a_single_picture_say_which_tracks_they_have(tmp_path, media):
    with File(media.silent_wav(tmp_path / "silent.wav")) as source:
        assert source.tracks == {"audio"} and list(source) == []
    with File(media.one_png(tmp_path / "one.png")) as source:
        assert source.tracks == {"video"}
        assert [type(item) for item in source] == [VideoFrame]
    assert Arrays(video=np.zeros((1, 8, 8, 3), np.uint8), fps=1).tracks == {"video"}
    assert Microphone.tracks == {"audio"}
