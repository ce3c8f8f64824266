"""The whole model: encoders -> combiner -> latent model -> text decoder.

Training runs `forward(batch)` over whole clips; serving runs `step` snippet by snippet
on a constant-size state and `answer` on demand. Both compute the same function
(ARCHITECTURE.md, "Seams": offline = streaming): the per-snippet parts are shared code, and the
clip-level attention is chunk-causal with the same window the ring buffers hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.align import AlignmentHead
from model.checkpoint import fingerprint, fit_weights, read_checkpoint, write_checkpoint
from model.combiner import build_combiner
from model.config import ModelConfig
from model.decoder import READ_HEAD, TextDecoder
from model.encoders import SnippetEncoder, audio_windows
from model.latent import LatentModel
from model.layers import init_weights
from model.state import State, StateSpec
from model.tokenizer import Tokenizer


@dataclass
class ModelOutput:
    """What `forward` returns: the losses, the teacher-forced answer logits and the latents."""

    loss: torch.Tensor
    text_loss: torch.Tensor
    latent_loss: torch.Tensor
    video_loss: torch.Tensor
    align_loss: torch.Tensor
    first_sight_loss: torch.Tensor
    first_sight_read_loss: torch.Tensor
    drill_loss: torch.Tensor  # answers to first-sight drills (`_drill_pass`), 0 without
    clip_drill_loss: torch.Tensor  # answers to drills over the clips' own marks (`_clip_drill_pass`), 0 without
    first_sight_pointer_loss: torch.Tensor  # which classes each question and drill names (`_pointer_terms`), 0 without
    answer_logits: torch.Tensor  # [B, Q, La, V]; position j predicts answer_ids[..., j]
    answer_ids: torch.Tensor  # [B, Q, La] targets (answer bytes + </a>), padded
    answer_mask: torch.Tensor  # [B, Q, La]
    question_valid: torch.Tensor  # [B, Q]
    latents: torch.Tensor  # x [B, T, m, dc]
    hidden: torch.Tensor  # h [B, T, m, dl]

    def exact_match(self) -> torch.Tensor:
        """bool [B, Q]: every answer token (and the end token) is the argmax — exactly when
        greedy generation would produce the reference answer. False for padding questions."""
        hit = (self.answer_logits.argmax(-1) == self.answer_ids) | ~self.answer_mask
        return hit.all(-1) & self.question_valid

    def accuracy(self) -> float:
        """Exact-match rate over the real questions of the batch."""
        total = int(self.question_valid.sum())
        return float(self.exact_match().sum()) / total if total else 0.0


class StreamerModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.tokenizer = Tokenizer()
        self.encoder = SnippetEncoder(cfg)
        self.combiner = build_combiner(cfg)
        self.latent = LatentModel(cfg)
        self.decoder = TextDecoder(cfg, self.tokenizer.vocab_size, self.combiner.memory_tokens)
        self.align = AlignmentHead(cfg) if cfg.align.dim else None
        init_weights(self, cfg.init_std)

    # ------------------------------------------------------------------ state
    def state_spec(self, batch_size: int) -> StateSpec:
        """Name -> (shape, dtype) of every state tensor; all batch-first, none depends on time."""
        spec: StateSpec = {
            "t": ((batch_size,), torch.int64),
            "audio_tail": ((batch_size, self.encoder.logmel.context), torch.float32),
        }
        spec.update(self.combiner.state_spec(batch_size))
        spec.update(self.latent.state_spec(batch_size))
        if self.cfg.decoder.first_sight_sounds:  # the hearing head's sounds of the snippets in h_window
            spec["heard_window"] = ((batch_size, self.cfg.latent.window, self.heard_width), torch.float32)
        return spec

    @staticmethod
    def state_bytes(cfg: ModelConfig, batch_size: int = 1) -> int:
        """Bytes of a stream state for `cfg` (built on the meta device: no memory used)."""
        with torch.device("meta"):
            model = StreamerModel(cfg)
        return model.state_nbytes(batch_size)

    def state_nbytes(self, batch_size: int = 1) -> int:
        total = 0
        for shape, dtype in self.state_spec(batch_size).values():
            numel = 1
            for s in shape:
                numel *= s
            total += numel * dtype.itemsize
        return total

    def init_state(self, batch_size: int, device=None) -> State:
        """A fresh state for `batch_size` streams (nothing seen yet)."""
        device = torch.device(device) if device is not None else self._device()
        state = {name: torch.zeros(shape, dtype=dtype, device=device)
                 for name, (shape, dtype) in self.state_spec(batch_size).items()}
        state.update(self.combiner.init_state(batch_size, device))
        return state

    def check_state(self, state: State) -> int:
        """Validate a state against this model; returns its batch size."""
        if not isinstance(state, dict) or "t" not in state:
            raise ValueError("a model state is a dict of tensors with a 't' entry; build one with init_state()")
        batch = state["t"].shape[0]
        spec = self.state_spec(batch)
        if set(state) != set(spec):
            raise ValueError(f"state has entries {sorted(state)} but this model needs {sorted(spec)}")
        for name, (shape, dtype) in spec.items():
            tensor = state[name]
            if tuple(tensor.shape) != shape or tensor.dtype != dtype:
                raise ValueError(f"state[{name!r}] is {tuple(tensor.shape)} {tensor.dtype}, expected {shape} {dtype}")
        return batch

    # ------------------------------------------------------------------ streaming
    @torch.no_grad()
    def step(self, state: State, video: torch.Tensor, audio: torch.Tensor) -> State:
        """Fold one snippet per stream into the state: video uint8 [B, F, H, W, 3], audio float32 [B, S].
        Returns a new state; the inputs are not modified."""
        batch = self.check_state(state)
        self._check_media(video, audio, (batch,))
        device = state["t"].device
        video, audio = video.to(device), audio.to(device)
        t = state["t"]
        windows = torch.cat((state["audio_tail"], audio), dim=1)
        tokens = self.encoder(video, windows)
        x, comb_state = self.combiner.step(state, tokens, t)
        _, latent_state = self.latent.step(state, x, t)
        new_state = {"t": t + 1, "audio_tail": windows[:, -self.encoder.logmel.context:].clone()}
        new_state.update(comb_state)
        new_state.update(latent_state)
        if self.cfg.decoder.first_sight_sounds:
            heard = state["heard_window"].clone()
            heard[torch.arange(batch, device=device), torch.remainder(t, self.cfg.latent.window)] = self.heard(windows)
            new_state["heard_window"] = heard
        return new_state

    @property
    def heard_width(self) -> int:
        """Numbers `heard` gives a snippet: each sound's presence, then with onsets its plays."""
        return self.cfg.decoder.first_sight_sounds * (2 if self.cfg.decoder.first_sight_onsets else 1)

    def heard(self, windows: torch.Tensor) -> torch.Tensor:
        """Audio windows [..., context + S] (`audio_windows`) -> [..., heard_width]: how surely the
        hearing head hears each sound in those snippets (`decoder.first_sight_sounds`), then with
        `decoder.first_sight_onsets` how many of its plays start there."""
        return self._heard(*self.hear(windows))

    def hear(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Audio windows [..., context + S] -> the hearing head's (logits, onsets) [..., sounds] each."""
        lead = windows.shape[:-1]
        logits, onsets = self.decoder.first_sight_hearing(self.encoder.logmel(windows.reshape(-1, windows.shape[-1])))
        return logits.view(*lead, -1), onsets.view(*lead, -1) if onsets is not None else None

    def clip_hearing(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """Whole clips' audio [B, T, S] -> `hear` of every snippet (None without a hearing head)."""
        if not self.cfg.decoder.first_sight_sounds:
            return None
        b, t, samples = audio.shape
        return self.hear(audio_windows(audio.reshape(b, t * samples), self.encoder.logmel.context, samples))

    def clip_heard(self, audio: torch.Tensor) -> torch.Tensor | None:
        """Whole clips' audio [B, T, S] -> [B, T, heard_width], what `heard` gives each snippet while
        streaming (None without a hearing head): the `heard` that TextDecoder.context takes."""
        hearing = self.clip_hearing(audio)
        return self._heard(*hearing) if hearing is not None else None

    @staticmethod
    def _heard(logits: torch.Tensor, onsets: torch.Tensor | None) -> torch.Tensor:
        present = torch.sigmoid(logits)
        return present if onsets is None else torch.cat((present, onsets), dim=-1)

    def _state_context(self, state: State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Decoder context from a state: memory and the h ring reordered oldest-first; returns
        the context, its mask and the first-sight tokens' ages (TextDecoder.token_ages)."""
        w = self.cfg.latent.window
        chunks = state["t"][:, None] - w + torch.arange(w, device=state["t"].device)  # [B, W]
        rows = torch.arange(chunks.shape[0], device=chunks.device)[:, None]
        h = state["h_window"][rows, torch.remainder(chunks, w)]
        heard = state["heard_window"][rows, torch.remainder(chunks, w)] if "heard_window" in state else None
        context, mask = self.decoder.context(state.get("memory"), h, chunks >= 0, heard)
        return context, mask, self.decoder.token_ages(h, chunks >= 0, heard)

    @torch.no_grad()
    def answer_logits(self, state: State, question_ids, answer_ids) -> torch.Tensor:
        """Teacher-forced logits [B, La, V] where position j predicts answer_ids[:, j].
        question_ids [B, Lq] start with <q>; answer_ids [B, La] end with </a> (tensors or lists)."""
        self.check_state(state)
        device = state["t"].device
        q = _as_batch(question_ids, device)
        a = _as_batch(answer_ids, device)
        context, ctx_mask, token_ages = self._state_context(state)
        ids = torch.cat((q, torch.full_like(q[:, :1], self.tokenizer.answer_id), a[:, :-1]), dim=1)
        positions = torch.arange(ids.shape[1], device=device)[None]
        logits, _ = self.decoder(ids, positions, None, self.decoder.cross_kv(context), ctx_mask,
                                 token_ages=token_ages)
        return logits[:, q.shape[1]:]

    @torch.no_grad()
    def answer(self, state: State, question: str, max_new_tokens: int | None = None, temperature: float = 0.0,
               seed: int | None = None) -> Iterator[str]:
        """Answer `question` about what one stream (state of batch size 1) has seen so far.
        Yields text pieces as tokens are generated; stops at end-of-answer or after
        `max_new_tokens` (default: the answer budget the model was trained with)."""
        if self.check_state(state) != 1:
            raise ValueError("answer() takes the state of one stream (batch size 1); slice the batch first")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if max_new_tokens is None:
            max_new_tokens = self.cfg.decoder.max_answer_tokens
        prompt = self.question_prompt(question)
        return self.tokenizer.stream_decode(self._generate(state, prompt, max_new_tokens, temperature, seed))

    def question_prompt(self, question: str) -> list[int]:
        """`<q> question <a>` as token ids; a question past the trained budget is refused
        rather than cut, since a cut question would be answered as if it were another one."""
        ids = self.tokenizer.question_ids(question)
        limit = self.cfg.decoder.max_question_tokens
        if len(ids) > limit:
            raise ValueError(f"the question is {len(ids) - 1} bytes long; this model reads questions of at most "
                             f"{limit - 1} bytes (UTF-8). Ask it in fewer words")
        return ids + [self.tokenizer.answer_id]

    def answer_targets(self, answer: str) -> list[int]:
        """`answer </a>` as token ids; an answer past the trained budget is refused rather
        than cut, since training on a cut answer teaches the model to stop mid-word."""
        ids = self.tokenizer.answer_ids(answer)
        limit = self.cfg.decoder.max_answer_tokens
        if len(ids) > limit:
            raise ValueError(f"the answer {answer!r} is {len(ids) - 1} bytes; this model is trained on answers of "
                             f"at most {limit - 1} bytes (decoder.max_answer_tokens). Shorten the answer or raise "
                             "the budget in the model config")
        return ids

    # ------------------------------------------------------------------ alignment
    @property
    def can_align(self) -> bool:
        """Whether this model has an alignment head (standing queries and search need one)."""
        return self.align is not None

    def _require_align(self) -> AlignmentHead:
        if self.align is None:
            raise ValueError(f"this {self.cfg.name!r} checkpoint has no alignment head, so it cannot watch or "
                             "search; use a checkpoint trained with one (the bundled model has it)")
        return self.align

    @torch.no_grad()
    def embed_snippet(self, state: State) -> torch.Tensor:
        """Unit vectors [B, align.dim] of the snippet each stream stepped last (read from the
        h ring, so any state after `step` will do)."""
        head = self._require_align()
        self.check_state(state)
        slot = torch.remainder(state["t"] - 1, self.cfg.latent.window)
        rows = torch.arange(slot.shape[0], device=slot.device)
        return head.embed_snippets(state["h_window"][rows, slot])

    @torch.no_grad()
    def embed_text(self, phrases: Sequence[str]) -> torch.Tensor:
        """Unit vectors [N, align.dim] of phrases ("red square", "a drum") to score snippets against."""
        head = self._require_align()
        ids, mask = self.phrase_ids(phrases)
        device = self._device()
        return head.embed_text(self.decoder.embed(ids.to(device)), mask.to(device))

    def phrase_ids(self, phrases: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Byte ids [N, L] (right-padded) and mask [N, L] of phrases; an empty phrase or one past
        `align.max_text_tokens` bytes is refused, since a cut phrase would match something else."""
        limit = self.cfg.align.max_text_tokens
        encoded = []
        for phrase in phrases:
            ids = self.tokenizer.encode(phrase.strip().lower()) if isinstance(phrase, str) else None
            if ids is None:
                raise ValueError(f"a phrase to watch or search for is text, got {type(phrase).__name__}")
            if not ids:
                raise ValueError("the phrase is empty; say what to look for, e.g. 'red square' or 'drum'")
            if len(ids) > limit:
                raise ValueError(f"the phrase {phrase[:40]!r}... is {len(ids)} bytes; this model reads phrases of "
                                 f"at most {limit} bytes. Say it in fewer words")
            encoded.append(ids)
        width = max((len(e) for e in encoded), default=1)
        ids = torch.full((len(encoded), width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros(len(encoded), width, dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, :len(e)] = torch.tensor(e)
            mask[i, :len(e)] = True
        return ids, mask

    def _generate(self, state, prompt, max_new_tokens, temperature, seed) -> Iterator[int]:
        device = state["t"].device
        tok = self.tokenizer
        context, ctx_mask, token_ages = self._state_context(state)
        cross_kv = self.decoder.cross_kv(context)
        generator = None
        if temperature > 0:
            generator = torch.Generator(device=device)
            generator.manual_seed(seed if seed is not None else torch.seed())
        ids = torch.tensor([prompt], device=device)
        length = ids.shape[1]
        with torch.no_grad():
            logits, caches = self.decoder(ids, torch.arange(length, device=device)[None], None, cross_kv, ctx_mask,
                                          token_ages=token_ages)
        for _ in range(max_new_tokens):
            last = logits[0, -1]
            if temperature > 0:
                token = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=generator))
            else:
                token = int(last.argmax())
            if token == tok.end_id:
                return
            yield token
            with torch.no_grad():
                step_ids = torch.tensor([[token]], device=device)
                mask = torch.ones(1, 1, length + 1, dtype=torch.bool, device=device)
                logits, caches = self.decoder(step_ids, torch.tensor([[length]], device=device), mask,
                                              cross_kv, ctx_mask, caches, token_ages=token_ages)
            length += 1

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """Training pass over whole clips with questions at arbitrary ask times.

        batch: video uint8 [B, T, F, H, W, 3], audio float32 [B, T, S], snippet_mask bool [B, T]
        (real snippets first), the question tensors of `encode_batch_questions` and, optionally,
        window_snippets int64 [B, Q]: how many of the most recent snippets of h each question's
        decoder may read (the rest of the window is hidden; 0 leaves the memory alone), the
        alignment head's phrase pool, for a first-sight head presence_targets int8 [B, T, classes]
        and, for first-sight tokens, first_sight_reads int64 [B, Q]: the class whose token each
        answer names, or -1 (with first_sight_read_heads int64 [B, Q], the last decoder layer's
        head that reads it; READ_HEAD without), and first_sight_only bool [B, Q]: questions whose
        decoder reads the first-sight tokens alone (training.samples.to_model_batch builds them); and the entries of
        first-sight drills (training.drills: drill_batch, clip_drill_batch)."""
        video, audio = batch["video"], batch["audio"]
        if video.dim() != 6 or audio.dim() != 3:
            raise ValueError("forward expects video [B, T, F, H, W, 3] and audio [B, T, S]")
        b, t = video.shape[:2]
        self._check_media(video, audio, (b, t))
        device = self._device()
        video, audio = video.to(device), audio.to(device)
        snippet_mask = batch.get("snippet_mask")
        snippet_mask = torch.ones(b, t, dtype=torch.bool, device=device) if snippet_mask is None else snippet_mask.to(device)
        x, memories, h = self._clip_latents(video, audio)
        hearing = self.clip_hearing(audio)
        heard = self._heard(*hearing) if hearing is not None else None  # as `clip_heard`

        # latent and video reconstruction: h_t predicts snippet t + 1
        pair = snippet_mask[:, 1:] & snippet_mask[:, :-1]
        if t > 1 and bool(pair.any()):
            pred = self.latent.predict_latent(h[:, :-1])
            err = (pred - x[:, 1:].detach()).pow(2).mean(dim=(-1, -2))
            latent_loss = (err * pair).sum() / pair.sum()
            recon = self.latent.reconstruct(h[:, :-1].flatten(0, 1)).view(b, t - 1, -1)
            target = self.latent.video_target(video[:, 1:].flatten(0, 1)).view(b, t - 1, -1)
            video_loss = ((recon - target).pow(2).mean(-1) * pair).sum() / pair.sum()
        else:
            latent_loss = video_loss = h.sum() * 0.0

        logits, text_loss, read_loss, pointer_terms, answer_ids, answer_mask, question_valid = self._question_pass(
            batch, memories, h, heard, device)
        align_loss = self._align_pass(batch, h, snippet_mask, device)
        first_sight_loss = self._first_sight_pass(batch, h, hearing, snippet_mask, device)
        pointer_terms = [pointer_terms]
        drill_loss = clip_drill_loss = h.sum() * 0.0
        if "drill_marks" in batch:
            drill_loss, terms = self._drill_pass(batch, device)
            pointer_terms.append(terms)
        if "clip_drill_rows" in batch:
            clip_drill_loss, terms = self._clip_drill_pass(batch, h, heard, device)
            pointer_terms.append(terms)
        pointer_terms = torch.cat(pointer_terms)
        pointer_loss = pointer_terms.mean() if pointer_terms.numel() else h.sum() * 0.0
        w = self.cfg.loss
        loss = (w.text * (text_loss + drill_loss + clip_drill_loss) + w.latent * latent_loss + w.video * video_loss
                + w.align * align_loss + w.first_sight * first_sight_loss + w.first_sight_read * read_loss
                + w.first_sight_pointer * pointer_loss)
        return ModelOutput(loss, text_loss, latent_loss, video_loss, align_loss, first_sight_loss, read_loss,
                           drill_loss, clip_drill_loss, pointer_loss, logits,
                           answer_ids, answer_mask, question_valid, x, h)

    def _clip_latents(self, video: torch.Tensor, audio: torch.Tensor):
        """Whole clips [B, T, ...] through encoder, combiner and latent model: (x, memories, h)."""
        b, t = video.shape[:2]
        samples = self.cfg.media.samples_per_snippet
        windows = audio_windows(audio.reshape(b, t * samples), self.encoder.logmel.context, samples)
        tokens = self.encoder(video.flatten(0, 1), windows.flatten(0, 1)).view(b, t, self.cfg.snippet_tokens, -1)
        x, memories = self.combiner.clip(tokens)
        return x, memories, self.latent.clip(x)

    @torch.no_grad()
    def embed_clip(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Alignment vectors [B, T, align.dim] of every snippet of whole clips (video uint8
        [B, T, F, H, W, 3], audio float32 [B, T, S]): what `embed_snippet` gives after each
        `step`, computed in one pass (offline = streaming)."""
        head = self._require_align()
        self._check_media(video, audio, tuple(video.shape[:2]))
        device = self._device()
        _, _, h = self._clip_latents(video.to(device), audio.to(device))
        return head.embed_snippets(h)

    def _align_pass(self, batch, h, snippet_mask, device) -> torch.Tensor:
        """The alignment loss over the batch's snippets and phrase pool (0 without either):
        batch["align_ids"]/["align_mask"] [P, L] phrases, batch["align_targets"] int8 [B, T, P]."""
        if self.align is None or "align_ids" not in batch or batch["align_ids"].shape[0] == 0:
            return h.sum() * 0.0
        snippets = self.align.embed_snippets(h)[snippet_mask]  # [S, dim]
        ids, mask = batch["align_ids"].to(device), batch["align_mask"].to(device)
        texts = self.align.embed_text(self.decoder.embed(ids), mask)
        targets = batch["align_targets"].to(device)[snippet_mask]  # [S, P]
        return self.align.loss(snippets.float(), texts.float(), targets)

    def _first_sight_pass(self, batch, h, hearing, snippet_mask, device) -> torch.Tensor:
        """Binary cross-entropy of the first-sight head's presence predictions over the batch's
        known targets: batch["presence_targets"] int8 [B, T, classes], 1 present in that snippet,
        0 absent, -1 unknown (0 without a head or targets); with a hearing head, plus its own over
        the sounds' columns (`hearing`: clip_hearing's logits and onsets [B, T, sounds]) and, with
        onsets, the squared error of its counts against batch["onset_targets"] [B, T, sounds]
        (-1 unknown). The latent's head keeps learning the sounds too: it costs nothing, and the
        latent tokens then keep carrying them."""
        targets = batch.get("presence_targets")
        loss = h.sum() * 0.0
        onset_targets = batch.get("onset_targets")
        if hearing is not None and hearing[1] is not None and onset_targets is not None:
            onset_targets = onset_targets.to(device)
            known = (onset_targets >= 0) & snippet_mask[..., None]
            if bool(known.any()):
                loss = loss + (hearing[1].float()[known] - onset_targets[known].float()).pow(2).mean()
        if not self.cfg.decoder.first_sight_classes or targets is None:
            return loss
        targets = targets.to(device)
        if targets.shape != (*h.shape[:2], self.cfg.decoder.first_sight_classes):
            raise ValueError(f"presence_targets must be [B, T, {self.cfg.decoder.first_sight_classes}] for "
                             f"h of {tuple(h.shape[:2])} snippets, got {tuple(targets.shape)}")
        known = (targets >= 0) & snippet_mask[..., None]
        if not bool(known.any()):
            return loss
        logits = self.decoder.presence_logits(h).float()
        loss = loss + F.binary_cross_entropy_with_logits(logits[known], targets[known].float())
        if hearing is None:
            return loss
        sounds = hearing[0].shape[-1]
        known, targets = known[..., -sounds:], targets[..., -sounds:]
        if bool(known.any()):
            loss = loss + F.binary_cross_entropy_with_logits(hearing[0].float()[known], targets[known].float())
        return loss

    def _question_pass(self, batch, memories, h, heard, device):
        """Teacher-forced answers of the batch's valid questions: (logits [B, Q, La, V], text loss,
        first-sight read loss, first-sight pointer terms (`_pointer_terms`), answer ids, answer mask,
        question_valid)."""
        q_ids = batch["question_ids"].to(device)
        q_mask = batch["question_mask"].to(device)
        a_ids = batch["answer_ids"].to(device)
        a_mask = batch["answer_mask"].to(device)
        ask = batch["ask_snippets"].to(device)
        valid = batch.get("question_valid")
        valid = q_mask.any(-1) if valid is None else valid.to(device)
        b, nq = q_ids.shape[:2]
        la = a_ids.shape[-1]
        t = h.shape[1]
        if bool((ask[valid] < 0).any() or (ask[valid] > t).any()):
            raise ValueError(f"ask_snippets must lie in [0, {t}] (snippets seen before the question)")
        ask = ask.clamp(0, t)
        rows = valid.nonzero(as_tuple=True)
        if rows[0].numel() == 0:
            logits = h.new_zeros(b, nq, la, self.tokenizer.vocab_size)
            return logits, h.sum() * 0.0, h.sum() * 0.0, h.new_zeros(0), a_ids, a_mask, valid
        w = self.cfg.latent.window
        ask_v = ask[rows]  # [N]
        h_ctx, h_valid = self._windows(h, rows[0], ask_v)
        heard_ctx = self._windows(heard, rows[0], ask_v)[0] if heard is not None else None
        memory = memories[rows[0], ask_v] if memories is not None else None
        visible = batch.get("window_snippets")
        if visible is not None:
            h_valid = h_valid & (torch.arange(w, device=device)[None] >= w - visible.to(device)[rows][:, None])
        context, ctx_mask = self.decoder.context(memory, h_ctx, h_valid, heard_ctx)
        token_ages = self.decoder.token_ages(h_ctx, h_valid, heard_ctx)
        only = batch.get("first_sight_only")
        if only is not None and bool(only.any()):
            ctx_mask = self._first_sight_only(ctx_mask, only.to(device)[rows])

        reads = batch.get("first_sight_reads")
        if reads is not None:
            reads = reads.to(device)[rows]
        read = reads is not None and bool((reads >= 0).any())
        if read and not self.cfg.decoder.first_sight_tokens:
            raise ValueError("first_sight_reads point the decoder at first-sight tokens this model lacks; "
                             "train them with --first-sight-tokens")
        read_heads = batch.get("first_sight_read_heads")
        if read:
            read_heads = (torch.full_like(reads, READ_HEAD) if read_heads is None
                          else read_heads.to(device)[rows])
            if bool((read_heads[reads >= 0] >= self.cfg.decoder.heads).any()):
                raise ValueError(f"first_sight_read_heads name a head past the decoder's {self.cfg.decoder.heads}; "
                                 "--read-sounds-apart needs decoder.heads >= 2")

        names = batch.get("first_sight_names")
        point = names is not None and self.cfg.decoder.first_sight_pointer

        ids, answer_at = self._pack_questions(q_ids[rows], q_mask[rows], a_ids[rows], a_mask[rows])
        logits, _, *extra = self.decoder(ids, torch.arange(ids.shape[1], device=device)[None], None,
                                         self.decoder.cross_kv(context), ctx_mask, read=read,
                                         token_ages=token_ages, names=point, read_heads=read)
        logits = logits.gather(1, answer_at[..., None].expand(-1, -1, logits.shape[-1]))  # [N, La, V]
        ai, am = a_ids[rows], a_mask[rows]
        text_loss = F.cross_entropy(logits[am], ai[am])
        read_loss = self._read_loss(extra[0], answer_at, am, reads, read_heads) if read else h.sum() * 0.0
        pointer_terms = (self._pointer_terms(_at_answers(extra[-1], answer_at), am, names.to(device)[rows]) if point
                         else h.new_zeros(0))
        full = logits.new_zeros(b, nq, la, logits.shape[-1])
        full[rows] = logits
        return full, text_loss, read_loss, pointer_terms, a_ids, a_mask, valid

    def _windows(self, h: torch.Tensor, clips: torch.Tensor, asks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent windows questions read: h [B, T, m, dl] (or any [B, T, ...] per snippet, as
        heard), per question its clip and how many snippets it saw ([N] each) -> h_ctx [N, W, m, dl]
        oldest first, h_valid [N, W]."""
        chunks = asks[:, None] - self.cfg.latent.window + torch.arange(self.cfg.latent.window, device=h.device)
        return h[clips[:, None], chunks.clamp(min=0)], chunks >= 0

    def drill_logits(self, marks: torch.Tensor, q_ids, q_mask, a_ids, a_mask, names: bool = False):
        """Teacher-forced answer logits [N, La, V] of one question per window of first-sight marks
        (marks [N, W, classes] as `TextDecoder.first_sight` gives them, oldest snippet first;
        question and answer tensors [N, L] as `encode_batch_questions` gives them per question),
        with only the null token and the first-sight tokens readable; with `names` (needs a
        first-sight pointer) also the pointer's logits at the answer positions [layers, N, La, classes]."""
        dc = self.cfg.decoder
        if not dc.first_sight_tokens:
            raise ValueError("first-sight drills are answered from first-sight tokens this model lacks; "
                             "train them with --first-sight-tokens")
        n, w = marks.shape[:2]
        if marks.shape[2] != dc.first_sight_classes or w != self.cfg.latent.window:
            raise ValueError(f"drill marks must be [N, {self.cfg.latent.window}, {dc.first_sight_classes}] "
                             f"(window, first-sight classes), got {tuple(marks.shape)}")
        # [null ; tokens] alone: the whole context with the rest masked, at a twentieth of its width
        context = torch.cat((self.decoder.null.expand(n, 1, -1), self.decoder.first_sight_summary(marks)), dim=1)
        context = self.decoder.context_norm(context)
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=marks.device)
        ages = self.decoder.snippets_ago(marks) if dc.first_sight_age_slopes else None  # as `token_ages`
        ids, answer_at = self._pack_questions(q_ids, q_mask, a_ids, a_mask)
        logits, _, *pointer = self.decoder(ids, torch.arange(ids.shape[1], device=marks.device)[None], None,
                                           self.decoder.cross_kv(context), mask, token_ages=ages, tokens_only=True,
                                           names=names)
        logits = logits.gather(1, answer_at[..., None].expand(-1, -1, logits.shape[-1]))
        return (logits, _at_answers(pointer[0], answer_at)) if names else logits

    def _drill_pass(self, batch, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Text loss of first-sight drills: questions answered from given first-sight marks alone
        (batch["drill_marks"] [N, W, classes] and drill_question_ids/_mask, drill_answer_ids/_mask
        [N, L]). They teach the decoder to read the tokens far more often than the clips ask
        `order`, at a fraction of a clip's cost (training.drills). Also the first-sight pointer's
        terms (`_pointer_terms`) where the batch names the drills' classes (drill_names [N, classes])."""
        return self._drills_answered(batch, "drill", batch["drill_marks"].to(device), device)

    def _clip_drill_pass(self, batch, h, heard, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Text loss (and first-sight pointer terms) of drills over the batch's own clips
        (training.drills.draw_clip_drills):
        batch["clip_drill_rows"]/["clip_drill_asks"] [N] say which clip and after how many of its
        snippets; the marks are the head's over that window, detached (the presence loss alone
        trains the head), so the decoder practises reading the tokens it meets in a question."""
        rows, asks = batch["clip_drill_rows"].to(device), batch["clip_drill_asks"].to(device)
        if bool((asks < 1).any() or (asks > h.shape[1]).any()):
            raise ValueError(f"clip_drill_asks must lie in [1, {h.shape[1]}] (snippets seen before the drill)")
        h_ctx, h_valid = self._windows(h, rows, asks)
        heard_ctx = self._windows(heard, rows, asks)[0] if heard is not None else None
        marks = self.decoder.first_sight(h_ctx, h_valid, heard_ctx).detach()
        return self._drills_answered(batch, "clip_drill", marks, device)

    def _drills_answered(self, batch, prefix: str, marks: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(text loss, first-sight pointer terms) of the drills under `prefix` in the batch, over `marks`."""
        a_ids, a_mask = batch[f"{prefix}_answer_ids"].to(device), batch[f"{prefix}_answer_mask"].to(device)
        names = batch.get(f"{prefix}_names")
        point = names is not None and self.cfg.decoder.first_sight_pointer
        out = self.drill_logits(marks, batch[f"{prefix}_question_ids"].to(device),
                                batch[f"{prefix}_question_mask"].to(device), a_ids, a_mask, names=point)
        logits = out[0] if point else out
        terms = self._pointer_terms(out[1], a_mask, names.to(device)) if point else marks.new_zeros(0)
        return F.cross_entropy(logits[a_mask], a_ids[a_mask]), terms

    def _first_sight_only(self, ctx_mask: torch.Tensor, only: torch.Tensor) -> torch.Tensor:
        """ctx_mask [N, Nc] with everything but the null token and the first-sight tokens masked
        for the questions `only` [N] marks: the memory answers `order` on short clips well enough
        that the decoder otherwise leaves the tokens unread."""
        if not self.cfg.decoder.first_sight_tokens:
            raise ValueError("first_sight_only leaves the decoder the first-sight tokens this model lacks; "
                             "train them with --first-sight-tokens")
        parts = self.decoder.context_parts(ctx_mask.shape[1], ctx_mask.device)
        other = parts["memory"] | parts["snippets"]
        return ctx_mask & ~(only[:, None] & other[None])

    def _read_loss(self, weights, answer_at, answer_mask, reads, heads) -> torch.Tensor:
        """Mean over the answer positions of questions with a read target (reads [N] >= 0) of
        −log of their reading head's (heads [N]) weight (of weights [N, heads, L, Nc]) on that
        class's first-sight token."""
        first = 1 + self.decoder.memory_tokens  # the tokens follow the null token and the memory slots
        weights = weights[torch.arange(len(heads), device=heads.device), heads]  # [N, L, Nc]
        on_token = weights.gather(2, (first + reads.clamp(min=0))[:, None, None].expand(-1, weights.shape[1], 1))
        on_token = on_token[:, :, 0].gather(1, answer_at)  # [N, La]
        kept = answer_mask & (reads >= 0)[:, None]
        return -torch.log(on_token[kept].float().clamp_min(1e-6)).mean()

    def _pointer_terms(self, logits, answer_mask, names) -> torch.Tensor:
        """The binary cross-entropy, flattened, of every layer's first-sight pointer logits at each
        answer position and class (logits [layers, N, La, classes], answer_mask [N, La]) against
        the classes each question names (names bool [N, classes]): where the answer is written,
        each query should know which classes its question named. Their mean over a forward's
        questions and drills is the pointer loss."""
        if names.shape[-1] != logits.shape[-1]:
            raise ValueError(f"first_sight_names must name {logits.shape[-1]} classes per question, got "
                             f"{names.shape[-1]}")
        targets = names[None, :, None].expand(logits.shape[0], -1, answer_mask.shape[1], -1)[:, answer_mask]
        return F.binary_cross_entropy_with_logits(logits[:, answer_mask].float(), targets.float(),
                                                  reduction="none").flatten()

    def _pack_questions(self, q_ids, q_mask, a_ids, a_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forcing rows `<q> question <a> answer[:-1]`, each starting at position 0 and
        right-padded to the longest row (causal attention never looks at the padding), so a
        short question with a long answer costs no more than its own length.

        Returns ids [N, L] and answer_at [N, La]: the row position whose logits predict each
        answer token (clamped inside the row for answer padding)."""
        lq = q_ids.shape[1]
        q_len = q_mask.sum(-1, keepdim=True)
        a_len = a_mask.sum(-1, keepdim=True)
        source = torch.cat((q_ids, torch.full_like(q_ids[:, :1], self.tokenizer.answer_id), a_ids[:, :-1]), dim=1)
        length = int((q_len + a_len).max())
        pos = torch.arange(length, device=q_ids.device)[None]
        # left-padded questions: row position p reads source index p + (lq - q_len), for the
        # question, <a> and the answer alike
        ids = source.gather(1, (pos + lq - q_len).clamp(max=source.shape[1] - 1))
        ids = ids.masked_fill(pos >= q_len + a_len, self.tokenizer.pad_id)
        answer_at = (q_len + torch.arange(a_ids.shape[1], device=q_ids.device)[None]).clamp(max=length - 1)
        return ids, answer_at

    def encode_batch_questions(self, questions: Sequence[Sequence[tuple[str, str, int]]]) -> dict[str, torch.Tensor]:
        """Per clip, a list of (question, answer, ask_snippets) -> padded tensors for `forward`:
        question_ids/question_mask [B, Q, Lq] (left-padded, start with <q>), answer_ids/answer_mask
        [B, Q, La] (right-padded, end with </a>), ask_snippets int64 [B, Q], question_valid bool [B, Q]."""
        tok = self.tokenizer
        b = len(questions)
        nq = max((len(qs) for qs in questions), default=0)
        encoded = [[(self.question_prompt(q)[:-1], self.answer_targets(a), int(s)) for q, a, s in qs] for qs in questions]
        lq = max((len(e[0]) for qs in encoded for e in qs), default=1)
        la = max((len(e[1]) for qs in encoded for e in qs), default=1)
        out = {
            "question_ids": torch.full((b, nq, lq), tok.pad_id, dtype=torch.long),
            "question_mask": torch.zeros(b, nq, lq, dtype=torch.bool),
            "answer_ids": torch.full((b, nq, la), tok.pad_id, dtype=torch.long),
            "answer_mask": torch.zeros(b, nq, la, dtype=torch.bool),
            "ask_snippets": torch.zeros(b, nq, dtype=torch.long),
            "question_valid": torch.zeros(b, nq, dtype=torch.bool),
        }
        for i, qs in enumerate(encoded):
            for j, (q, a, s) in enumerate(qs):
                out["question_ids"][i, j, lq - len(q):] = torch.tensor(q)
                out["question_mask"][i, j, lq - len(q):] = True
                out["answer_ids"][i, j, : len(a)] = torch.tensor(a)
                out["answer_mask"][i, j, : len(a)] = True
                out["ask_snippets"][i, j] = s
                out["question_valid"][i, j] = True
        return out

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: str | Path, dtype: torch.dtype | None = None) -> str:
        """Write model.safetensors, config.json and tokenizer.json into `directory`;
        `dtype=torch.float16` stores the weights at half the size (widened again on load).
        Returns the fingerprint the saved checkpoint loads with."""
        return write_checkpoint(directory, self.cfg, self.state_dict(), self.tokenizer, dtype)

    @staticmethod
    def load(directory: str | Path, device=None) -> StreamerModel:
        """Rebuild a model from a checkpoint folder, refusing corrupt or mismatched files."""
        cfg, tensors = read_checkpoint(directory)
        model = StreamerModel(cfg)
        model.load_state_dict(fit_weights(directory, tensors, model.state_dict()), strict=True)
        if device is not None:
            model.to(device)
        return model.eval()

    def fingerprint(self) -> str:
        """sha256 over the config and every weight: names a checkpoint exactly."""
        return fingerprint(self.cfg, self.state_dict())

    # ------------------------------------------------------------------ helpers
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_media(self, video: torch.Tensor, audio: torch.Tensor, lead: tuple[int, ...]) -> None:
        m = self.cfg.media
        want_v = (*lead, m.frames_per_snippet, m.height, m.width, 3)
        want_a = (*lead, m.samples_per_snippet)
        if not isinstance(video, torch.Tensor) or tuple(video.shape) != want_v or video.dtype != torch.uint8:
            got = f"{tuple(video.shape)} {video.dtype}" if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(f"video must be uint8 {want_v} for the {self.cfg.name!r} preset, got {got}")
        if not isinstance(audio, torch.Tensor) or tuple(audio.shape) != want_a or audio.dtype != torch.float32:
            got = f"{tuple(audio.shape)} {audio.dtype}" if isinstance(audio, torch.Tensor) else type(audio).__name__
            raise ValueError(f"audio must be float32 {want_a} (mono {m.sample_rate} Hz), got {got}")


def _as_batch(ids, device) -> torch.Tensor:
    tensor = torch.as_tensor(ids, dtype=torch.long, device=device)
    return tensor[None] if tensor.dim() == 1 else tensor


def _at_answers(layer_logits: torch.Tensor, answer_at: torch.Tensor) -> torch.Tensor:
    """A decoder's pointer logits [layers, N, L, classes] at the positions that write each answer
    token (answer_at [N, La]) -> [layers, N, La, classes]."""
    at = answer_at[None, :, :, None].expand(layer_logits.shape[0], -1, -1, layer_logits.shape[-1])
    return layer_logits.gather(2, at)
