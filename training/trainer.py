"""The training loop: AdamW, warm-up + cosine schedule, gradient clipping, mixed precision
on GPU, DDP under torchrun, atomic checkpoints, exact resume, clean stop on signals.

Determinism is by construction: the clips of step s are the global sample indices
[s·B, (s+1)·B) of a seeded, index-addressable data source (`TrainingData`), and
the random generators are re-seeded from (seed, step, rank) before every step. A resumed
run therefore replays exactly what the uninterrupted run would have done.

The loss is normalised by *global* counts (answer tokens, snippet pairs) rather than
per-rank means, so N ranks × B/N clips produce the same gradient as one process with B
clips (up to float summation order), whatever the clip lengths and question counts.

One module past ~400 lines on purpose: setup, one step, checkpoints and the loop share the
run's state (model, optimizer, distributed group, stop flag) and read top to bottom as one
story; the separable parts already live beside it (config, schedule, distributed, samples,
machine).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from model import ModelConfig, StreamerModel
from model.checkpoint import read_config
from training import checkpointing
from training.config import TrainConfig, TrainingError
from training.distributed import all_reduce, setup_distributed
from training.drills import clip_drill_batch, draw_clip_drills, draw_drills, drill_batch
from training.machine import machine_description
from training.metrics import MetricsLog, truncate_after
from training.samples import TrainingData, cut_windows, to_model_batch
from training.schedule import clip_lengths_at, lr_at
from training.world.first_sight import FIRST_SIGHT_CLASSES
from training.world.vocab import SOUNDS

# Parameters of two or more dimensions that weight decay leaves alone: gains that start at 1 and
# the first-sight pointer's biases (one row per layer), which start at its prior.
UNDECAYED_MATRICES = frozenset({"decoder.length_scales", "decoder.first_sight_pointer_gains",
                                "decoder.first_sight_pointer_bias"})

# Small heads that start from nothing beside a trained network, and how much faster than it
# they learn: at a fine-tuning rate (1e-4), a first try of the first-sight head (trained on first
# appearances alone) had learned no more than its classes' base rates after 300 steps.
FAST_PARTS = ("decoder.first_sight_",)
FAST_PART_LR_SCALE = 10.0

# Decoder switches that add a part to the network, by the TrainConfig/DecoderConfig field, with
# the names (prefixes) of the part's weights; over an --init checkpoint without it, the part starts fresh.
DECODER_PARTS = {"age_slopes": "decoder.age_slopes", "length_scale": "decoder.length_scales",
                 "first_sight_tokens": "decoder.first_sight_token_",
                 "first_sight_age_slopes": "decoder.first_sight_age_slopes",
                 "first_sight_query_slopes": "decoder.first_sight_query_slopes",
                 "first_sight_pointer": "decoder.first_sight_pointer",
                 "first_sight_company": "decoder.first_sight_company",
                 "first_sight_onsets": ("decoder.first_sight_onsets", "decoder.first_sight_hearing.onsets."),
                 "first_sight_lookup": "decoder.first_sight_lookup"}


# --- signals ---------------------------------------------------------------------------


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps (save, then exit)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user really wants out now
        self.signum = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


# --- the run ---------------------------------------------------------------------------


@dataclass
class TrainResult:
    step: int
    checkpoint: Path | None
    stopped_by_signal: int | None
    wall_seconds: float
    last_metrics: dict[str, float]


class Trainer:
    """One training run (one process of it under torchrun)."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, command: str | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.resume = resume
        self.command = command or " ".join(sys.argv)
        self.out = Path(cfg.out)
        self.d = setup_distributed(cfg)
        try:
            model_cfg = model_config(cfg)
        except ValueError as err:
            raise TrainingError(str(err)) from None
        if cfg.first_sight and cfg.data not in ("world", "world:train"):
            raise TrainingError("--first-sight learns which of the world's shapes and sounds each snippet holds; it "
                                "needs --data world (a folder dataset has no such truth)")
        self.data = TrainingData.open(cfg.data, model_cfg.media, seed=cfg.seed,
                                      questions_per_clip=cfg.questions_per_clip, strict=cfg.strict, wild=cfg.wild,
                                      kind_weights=cfg.kind_weights, off_palette=cfg.off_palette)
        self.total_steps = self._total_steps()
        self.start_step, self.wall_before, model = self._load_or_create(model_cfg)
        self.model = model.to(self.d.device)
        self.model_cfg = self.model.cfg
        w = self.model_cfg.loss
        self.weights = (
            w.text if cfg.text_weight is None else cfg.text_weight,
            w.latent if cfg.latent_weight is None else cfg.latent_weight,
            w.video if cfg.video_weight is None else cfg.video_weight,
            w.align if cfg.align_weight is None else cfg.align_weight,
            w.first_sight if cfg.first_sight is None else cfg.first_sight,
            w.first_sight_read if cfg.first_sight_read is None else cfg.first_sight_read,
            w.first_sight_pointer if cfg.first_sight_pointer is None else cfg.first_sight_pointer,
        )
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, cfg.weight_decay, cfg.lr_scales),
                                           lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)
        if self.start_step > 0:
            checkpointing.load_optimizer_state(self._resume_from, self.optimizer)
        self.ddp_model: torch.nn.Module = self.model
        if self.d.active:
            ids = [self.d.device.index] if self.d.device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        amp = cfg.amp if cfg.amp != "auto" else ("bf16" if self.d.device.type == "cuda" else "off")
        self.autocast_dtype = torch.bfloat16 if amp == "bf16" else None
        self.stop = StopRequest()

    # -- setup ------------------------------------------------------------------------
    def _total_steps(self) -> int:
        cfg = self.cfg
        if cfg.steps is not None and cfg.epochs is not None:
            raise TrainingError("give either --steps or --epochs, not both")
        if cfg.steps is not None:
            return cfg.steps
        if cfg.epochs is not None:
            if self.data.size is None:
                raise TrainingError("--epochs needs a folder dataset; the on-the-fly world is endless, use --steps")
            return max(1, math.ceil(cfg.epochs * self.data.size / cfg.batch))
        raise TrainingError("say how long to train: --steps N (or --epochs E for a folder dataset)")

    def _load_or_create(self, model_cfg: ModelConfig) -> tuple[int, float, StreamerModel]:
        cfg = self.cfg
        latest = checkpointing.latest_checkpoint(self.out) if self.out.exists() else None
        self._resume_from = None
        if self.resume:
            if latest is None:
                raise TrainingError(f"--resume: {self.out} holds no checkpoint to continue; drop --resume to start")
            state = checkpointing.read_trainer_state(latest)
            saved_cfg = read_config(latest)
            if saved_cfg.to_dict() != model_cfg.to_dict():
                diff = _config_diff(saved_cfg.to_dict(), model_cfg.to_dict())
                raise TrainingError(
                    f"--resume: the checkpoint in {latest} is a {saved_cfg.name!r} model of another "
                    f"architecture than --preset {cfg.preset} ({diff}); resume with the preset it was "
                    "trained with, or start a new run in another --out folder"
                )
            saved_identity = state.get("data_identity", {})
            if saved_identity != cfg.data_identity():
                changed = sorted(k for k in cfg.data_identity() if saved_identity.get(k) != cfg.data_identity()[k])
                raise TrainingError(
                    f"--resume: {', '.join(changed)} differ from the run in {self.out} "
                    f"({ {k: saved_identity.get(k) for k in changed} }); the data order could not continue "
                    "where it stopped — use the original values"
                )
            if state["step"] >= self.total_steps:
                raise TrainingError(
                    f"--resume: the run in {self.out} already reached step {state['step']} of "
                    f"{self.total_steps}; raise --steps to train further"
                )
            model = StreamerModel.load(latest)
            self._resume_from = latest
            return int(state["step"]), float(state.get("wall_seconds", 0.0)), model
        if latest is not None:
            raise TrainingError(
                f"{self.out} already holds a training run (latest {latest.name}); pass --resume to continue "
                "it, or choose another --out folder"
            )
        if cfg.init is not None:
            init_dir = checkpointing.resolve_model_dir(cfg.init)
            model = StreamerModel.load(init_dir)
            # An exported model carries a standing-query threshold calibrated on world:val; it is
            # no part of the architecture, and this run's export calibrates its own.
            model.cfg.align.watch_threshold = model_cfg.align.watch_threshold
            if model.cfg.latent.window < model_cfg.latent.window:
                model = _grow_latent_window(model, model_cfg.latent.window)
            if model.cfg.decoder.layers < model_cfg.decoder.layers:
                model = _grow_decoder(model, model_cfg.decoder.layers)
            if (model.cfg.combiner.memory_update, model_cfg.combiner.memory_update) == ("pool", "gated"):
                gated = replace(model.cfg, combiner=replace(model.cfg.combiner, memory_update="gated"))
                model = _with_new_part(model, gated, "combiner.write_gate.", cfg)
            if cfg.age_code is not None and model.cfg.decoder.age_code != cfg.age_code:
                model = _with_codes(model, age_code=cfg.age_code)
            if model_cfg.decoder.first_sight_classes and not model.cfg.decoder.first_sight_classes:
                grown = replace(model.cfg, decoder=replace(model.cfg.decoder,
                                                           first_sight_classes=model_cfg.decoder.first_sight_classes))
                model = _with_new_part(model, grown, "decoder.first_sight_", cfg)
            if model_cfg.decoder.first_sight_sounds and not model.cfg.decoder.first_sight_sounds:
                grown = replace(model.cfg, decoder=replace(model.cfg.decoder,
                                                           first_sight_sounds=model_cfg.decoder.first_sight_sounds))
                model = _with_new_part(model, grown, "decoder.first_sight_hearing.", cfg)
            for switch, part in DECODER_PARTS.items():
                if getattr(model_cfg.decoder, switch) and not getattr(model.cfg.decoder, switch):
                    grown = replace(model.cfg, decoder=replace(model.cfg.decoder, **{switch: True}))
                    model = _with_new_part(model, grown, part, cfg)
            code = cfg.first_sight_age_code
            if code is not None and model.cfg.decoder.first_sight_age_code != code:
                model = _with_codes(model, first_sight_age_code=code)
            if model.cfg.to_dict() == model_cfg.to_dict():
                return 0, 0.0, model
            if _without_align(model.cfg) != _without_align(model_cfg) or model.cfg.align.dim:
                raise TrainingError(
                    f"--init {cfg.init} is a model of another architecture than --preset {cfg.preset} "
                    f"({_config_diff(model.cfg.to_dict(), model_cfg.to_dict())})"
                )
            # A checkpoint from before the alignment head: keep every weight it has, start the head fresh.
            torch.manual_seed(cfg.seed)
            return 0, 0.0, _with_new_part(model, model_cfg, "align.", cfg)
        torch.manual_seed(cfg.seed)
        return 0, 0.0, StreamerModel(model_cfg)

    # -- one step ----------------------------------------------------------------------
    def _local_indices(self, step: int) -> range:
        """This rank's share of the global sample indices of `step` (contiguous slices)."""
        per_rank = self.cfg.batch // self.d.world
        first = step * self.cfg.batch + self.d.rank * per_rank
        return range(first, first + per_rank)

    def _load_step(self, step: int) -> list[dict[str, Any]]:
        lengths = clip_lengths_at(step, self.cfg)
        return [self.data.sample(i, lengths) for i in self._local_indices(step)]

    def _micro_batches(self, step: int, samples: list[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
        size = self.cfg.micro_batch or len(samples)
        reads, names = self.weights[5] > 0, self.weights[6] > 0
        hiding = torch.Generator().manual_seed((self.cfg.seed * 1_000_033 + step) * 16 + self.d.rank)
        batches = [to_model_batch(self.model, samples[i:i + size], first_sight_reads=reads,
                                  first_sight_only=self.cfg.first_sight_only, generator=hiding,
                                  first_sight_names=names, company_only=self.cfg.company_only,
                                  read_kinds=self.cfg.read_kinds, read_sounds_apart=self.cfg.read_sounds_apart)
                   for i in range(0, len(samples), size)]
        if self.cfg.window_dropout:
            generator = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + step) * 16 + self.d.rank)
            window = self.model.cfg.latent.window
            batches = [cut_windows(b, self.cfg.window_dropout, window, generator) for b in batches]
        drills = self._drill_share()
        if drills:  # all on the first micro-batch: they cost the decoder alone
            generator = torch.Generator().manual_seed((self.cfg.seed * 1_000_037 + step) * 16 + self.d.rank)
            batches[0].update(drill_batch(self.model, draw_drills(drills, self.model.cfg.latent.window, generator)))
        if self.cfg.clip_drills:
            generator = torch.Generator().manual_seed((self.cfg.seed * 1_000_039 + step) * 16 + self.d.rank)
            for b in batches:
                b.update(clip_drill_batch(self.model, draw_clip_drills(
                    b["presence_targets"], b["snippet_mask"].sum(1), self.cfg.clip_drills,
                    self.model.cfg.latent.window, generator, self.cfg.lure_drills)))
        return batches

    def _drill_share(self) -> int:
        """This rank's first-sight drills per step."""
        total = self.cfg.first_sight_drills
        return total // self.d.world + (self.d.rank < total % self.d.world)

    def _train_step(self, step: int, samples: list[dict[str, Any]]) -> dict[str, float]:
        torch.manual_seed(self.cfg.seed * 1_000_003 + step * 1009 + self.d.rank)
        lr = lr_at(step, self.total_steps, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # absent in optimizer states saved before it
        batches = self._micro_batches(step, samples)

        # Global normalisers over all ranks: answer tokens, (snippet, next snippet) pairs, snippets,
        # answer tokens with a first-sight read target and clip drills' answer tokens.
        counts = torch.zeros(5, dtype=torch.float64)
        for b in batches:
            counts[0] += (b["answer_mask"] & b["question_valid"][..., None]).sum()
            pair = b["snippet_mask"][:, 1:] & b["snippet_mask"][:, :-1]
            counts[1] += pair.sum()
            counts[2] += b["snippet_mask"].sum()
            counts[3] += _read_tokens(b)
            counts[4] += _clip_drill_tokens(b)
        counts = all_reduce(counts.to(self.d.device), self.d).cpu()
        tokens, pairs = max(float(counts[0]), 1.0), max(float(counts[1]), 1.0)

        w_text, w_latent, w_video, w_align, w_first, w_read, w_pointer = self.weights
        snippets, read_tokens = max(float(counts[2]), 1.0), max(float(counts[3]), 1.0)
        clip_drill_tokens = max(float(counts[4]), 1.0)
        # loss, text, latent, video, correct, questions, align, first sight, first-sight read, drills,
        # clip drills, first-sight pointer
        sums = torch.zeros(12, dtype=torch.float64)
        self.optimizer.zero_grad(set_to_none=True)
        for i, b in enumerate(batches):
            last = i == len(batches) - 1
            sync = self.ddp_model.no_sync() if self.d.active and not last else nullcontext()
            with sync:
                with torch.autocast(self.d.device.type, dtype=self.autocast_dtype,
                                    enabled=self.autocast_dtype is not None):
                    out = self.ddp_model(b)
                n_tok = float((b["answer_mask"] & b["question_valid"][..., None]).sum())
                n_pair = float((b["snippet_mask"][:, 1:] & b["snippet_mask"][:, :-1]).sum())
                text = out.text_loss.float() * (n_tok / tokens)
                pointer = out.first_sight_pointer_loss.float() * (n_tok / tokens)
                latent = out.latent_loss.float() * (n_pair / pairs)
                video = out.video_loss.float() * (n_pair / pairs)
                share = float(b["snippet_mask"].sum()) / snippets
                align = out.align_loss.float() * share
                first = out.first_sight_loss.float() * share
                read = out.first_sight_read_loss.float() * (_read_tokens(b) / read_tokens)
                # every rank's drills are one mean; DDP's average over ranks makes them the global one
                drill = out.drill_loss.float() / self.d.world
                clip_drill = out.clip_drill_loss.float() * (_clip_drill_tokens(b) / clip_drill_tokens)
                loss = (w_text * (text + drill + clip_drill) + w_latent * latent + w_video * video + w_align * align
                        + w_first * first + w_read * read + w_pointer * pointer)
                # DDP averages gradients over ranks; undo that so the sum over ranks is the global mean.
                (loss * self.d.world).backward()
            hits = out.exact_match()
            sums += torch.tensor([loss.item(), text.item(), latent.item(), video.item(),
                                  float(hits.sum()), float(out.question_valid.sum()), align.item(), first.item(),
                                  read.item(), drill.item(), clip_drill.item(), pointer.item()],
                                 dtype=torch.float64)
        sums = all_reduce(sums.to(self.d.device), self.d).cpu()
        if self.cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        else:
            grad_norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in self.model.parameters() if p.grad is not None]))
        loss_value = float(sums[0])
        if not (math.isfinite(loss_value) and math.isfinite(float(grad_norm))):
            bad = "loss" if not math.isfinite(loss_value) else "gradient norm"
            latest = checkpointing.latest_checkpoint(self.out)
            kept = f"the last good checkpoint {latest} is kept" if latest else "no checkpoint was written yet"
            raise TrainingError(
                f"the {bad} became {loss_value if bad == 'loss' else float(grad_norm)} at step {step + 1}; "
                f"training stopped and {kept}. Lower --lr (now {self.cfg.lr:g}) or lengthen --warmup, "
                "then continue with --resume"
            )
        self.optimizer.step()
        return {
            "loss": loss_value, "text_loss": float(sums[1]), "latent_loss": float(sums[2]),
            "video_loss": float(sums[3]), "align_loss": float(sums[6]), "first_sight_loss": float(sums[7]),
            "first_sight_read_loss": float(sums[8]), "drill_loss": float(sums[9]),
            "clip_drill_loss": float(sums[10]), "first_sight_pointer_loss": float(sums[11]),
            "answer_acc": float(sums[4]) / max(1.0, float(sums[5])),
            "questions": int(sums[5]), "snippets": int(counts[2]), "grad_norm": float(grad_norm), "lr": lr,
        }

    # -- checkpoints -------------------------------------------------------------------
    def _card(self, step: int, wall: float, metrics: dict[str, float]) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "command": self.command,
            "preset": cfg.preset,
            "data": cfg.data,
            "steps": step,
            "planned_steps": self.total_steps,
            "clips_seen": step * cfg.batch,
            "train_config": _jsonable(asdict(cfg)),
            "loss_weights": dict(zip(("text", "latent", "video", "align", "first_sight", "first_sight_read",
                                      "first_sight_pointer"), self.weights)),
            "wall_seconds": round(wall, 1),
            "machine": machine_description(self.d.device, self.d.world),
            "final_train_metrics": metrics,
            "fingerprint": None,  # filled below: the card names the exact weights
        }

    def save(self, step: int, wall: float, metrics: dict[str, float]) -> Path | None:
        if not self.d.main:
            return None
        card = self._card(step, wall, metrics)
        card["fingerprint"] = self.model.fingerprint()
        state = {"data_identity": self.cfg.data_identity(), "wall_seconds": wall,
                 "samples_seen": step * self.cfg.batch, "train_config": _jsonable(asdict(self.cfg))}
        return checkpointing.save_checkpoint(self.out, step, self.model, self.optimizer, state, card,
                                             keep_last=self.cfg.keep_last)

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, d = self.cfg, self.d
        if cfg.batch % d.world:
            raise TrainingError(f"--batch {cfg.batch} must be a multiple of the {d.world} processes")
        if d.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.start_step > 0:
                truncate_after(self.out, self.start_step)
        log = MetricsLog(self.out) if d.main else None
        if log is not None:
            log.write("event", self.start_step, event="resume" if self.start_step else "start",
                      world_size=d.world, device=str(d.device), command=self.command)
        self.stop.install()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        bar = tqdm(total=self.total_steps, initial=self.start_step, desc="train", unit="step",
                   disable=not (d.main and cfg.progress), dynamic_ncols=True)
        step = self.start_step
        metrics: dict[str, float] = {}
        checkpoint: Path | None = None
        stopped: int | None = None
        started = time.perf_counter()
        wall = self.wall_before
        try:
            pending: Future = pool.submit(self._load_step, step)
            self.ddp_model.train()
            while step < self.total_steps:
                if self._stop_requested():
                    stopped = self.stop.signum or signal.SIGTERM
                    break
                samples = pending.result()
                if step + 1 < self.total_steps:
                    pending = pool.submit(self._load_step, step + 1)
                t0 = time.perf_counter()
                metrics = self._train_step(step, samples)
                seconds = time.perf_counter() - t0
                step += 1
                wall = self.wall_before + time.perf_counter() - started
                metrics["clips_per_s"] = cfg.batch / seconds
                metrics["snippets_per_s"] = metrics["snippets"] / seconds
                if log is not None:
                    log.write("train", step, **metrics)
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['answer_acc']:.2f}",
                                clips_s=f"{metrics['clips_per_s']:.1f}",
                                snip_s=f"{metrics['snippets_per_s']:.0f}", refresh=False)
                if cfg.eval_every and step % cfg.eval_every == 0 and step < self.total_steps:
                    self._evaluate(step, log)
                if step % cfg.checkpoint_every == 0 and step < self.total_steps:
                    checkpoint = self.save(step, wall, metrics) or checkpoint
            if d.active:
                fingerprints = self._rank_fingerprints()
                if log is not None:
                    log.write("event", step, event="ranks_checked", fingerprints=fingerprints,
                              in_sync=len(set(fingerprints)) == 1)
                if len(set(fingerprints)) != 1:
                    raise TrainingError(f"the {d.world} processes ended step {step} with different weights "
                                        f"({fingerprints}); DDP lost synchronisation — please report this")
            if step > self.start_step or stopped is None:
                checkpoint = self.save(step, wall, metrics) or checkpoint
            if cfg.eval_every and stopped is None and step == self.total_steps:
                self._evaluate(step, log)
            skipped = self.data.problems()
            if log is not None:
                log.write("event", step, event=f"stopped by signal {stopped}" if stopped else "finished",
                          wall_seconds=round(wall, 1), skipped_samples=skipped)
            if skipped and d.main:
                print(f"skipped bad samples in {cfg.data}:\n{self.data.folder.report.summary()}", file=sys.stderr)
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)
            self.stop.restore()
            if log is not None:
                log.close()
        return TrainResult(step, checkpoint, stopped, wall, metrics)

    def _rank_fingerprints(self) -> list[str]:
        """Every rank's weight fingerprint (sha256), gathered: DDP must keep them identical."""
        digest = bytes.fromhex(self.model.fingerprint())
        mine = torch.tensor(list(digest), dtype=torch.uint8, device=self.d.device)
        gathered = [torch.empty_like(mine) for _ in range(self.d.world)]
        dist.all_gather(gathered, mine)
        return [bytes(t.cpu().tolist()).hex() for t in gathered]

    def _stop_requested(self) -> bool:
        """All ranks agree to stop at the same step when any of them got a signal."""
        flag = torch.tensor([1.0 if self.stop.signum is not None else 0.0], device=self.d.device)
        return bool(all_reduce(flag, self.d).item() > 0)

    def _evaluate(self, step: int, log: MetricsLog | None) -> None:
        """Generated-answer accuracy on a few world:test clips, logged for the curves."""
        from training.evaluate import evaluate, load_eval_clips

        if self.d.main:
            clips = load_eval_clips("world:test", self.model_cfg.media, clips=self.cfg.eval_clips)
            self.model.eval()
            result = evaluate(self.model, clips, progress=False)
            self.model.train()
            if log is not None:
                log.write("eval", step, data="world:test", overall=result.overall,
                          per_kind={k: result.accuracy(k) for k in result.kinds()})
        if self.d.active:
            dist.barrier()

    def close(self) -> None:
        if self.d.active and dist.is_initialized():
            dist.destroy_process_group()


def model_config(cfg: TrainConfig) -> ModelConfig:
    """The model a run trains from scratch: the preset with the parts its flags switch on."""
    model_cfg = ModelConfig.from_name(cfg.preset)
    if cfg.latent_window is not None:
        model_cfg = replace(model_cfg, latent=replace(model_cfg.latent, window=cfg.latent_window))
    if cfg.decoder_layers is not None:
        model_cfg = replace(model_cfg, decoder=replace(model_cfg.decoder, layers=cfg.decoder_layers))
    if cfg.memory_update is not None:
        model_cfg = replace(model_cfg, combiner=replace(model_cfg.combiner, memory_update=cfg.memory_update))
    if cfg.age_code is not None:
        model_cfg = replace(model_cfg, decoder=replace(model_cfg.decoder, age_code=cfg.age_code))
    if cfg.first_sight:
        model_cfg = replace(model_cfg, decoder=replace(model_cfg.decoder,
                                                       first_sight_classes=len(FIRST_SIGHT_CLASSES)))
    if cfg.first_sight_hearing:  # the world's sounds are the last of its first-sight classes
        model_cfg = replace(model_cfg, decoder=replace(model_cfg.decoder, first_sight_sounds=len(SOUNDS)))
    for switch in DECODER_PARTS:
        if getattr(cfg, switch):
            model_cfg = replace(model_cfg, decoder=replace(model_cfg.decoder, **{switch: True}))
    if cfg.first_sight_age_code is not None:
        model_cfg = replace(model_cfg, decoder=replace(model_cfg.decoder,
                                                       first_sight_age_code=cfg.first_sight_age_code))
    return model_cfg


def _grow_latent_window(model: StreamerModel, window: int) -> StreamerModel:
    """The same model reading `window` snippets of latent state directly. Attention over the
    window is relative (RoPE), so only the decoder's age embeddings grow; the new, older ages
    start as the oldest trained one."""
    grown = StreamerModel(replace(model.cfg, latent=replace(model.cfg.latent, window=window)))
    state = model.state_dict()
    ages = state["decoder.age_emb"]
    state["decoder.age_emb"] = torch.cat([ages, ages[-1:].expand(window - len(ages), -1, -1)])
    grown.load_state_dict(state)
    return grown


def _grow_decoder(model: StreamerModel, layers: int) -> StreamerModel:
    """The same model with `layers` decoder blocks: the new ones follow the last, fresh, with the
    projections that write to the residual stream at zero, so every answer stays as it was until
    they learn; their per-layer age slopes and lookups start at zero and length gains at 1, as a new model's."""
    grown = StreamerModel(replace(model.cfg, decoder=replace(model.cfg.decoder, layers=layers)))
    fresh = grown.state_dict()
    state = model.state_dict()
    old_layers = model.cfg.decoder.layers
    for name in ("age_slopes", "length_scales", "first_sight_age_slopes", "first_sight_query_slopes",
                 "first_sight_pointer", "first_sight_pointer_bias", "first_sight_pointer_gains", "first_sight_lookup"):
        key = f"decoder.{name}"
        if key in state:
            state[key] = torch.cat((state[key], fresh[key][old_layers:]))
    for i in range(old_layers, layers):
        prefix = f"decoder.blocks.{i}."
        for key, value in fresh.items():
            if key.startswith(prefix):
                writes = key.endswith(("attn.proj.weight", "attn.proj.bias", "cross.proj.weight", "cross.proj.bias",
                                       "mlp.proj.weight", "mlp.proj.bias"))
                state[key] = torch.zeros_like(value) if writes else value
    grown.load_state_dict(state)
    return grown


def _with_codes(model: StreamerModel, **amplitudes: float) -> StreamerModel:
    """The same weights under other fixed decoder age codes (`age_code`, `first_sight_age_code`:
    computed, not learned)."""
    recoded = StreamerModel(replace(model.cfg, decoder=replace(model.cfg.decoder, **amplitudes)))
    recoded.load_state_dict(model.state_dict())
    return recoded


def parameter_groups(model: torch.nn.Module, weight_decay: float,
                     lr_scales: tuple[tuple[str, float], ...] = ()) -> list[dict[str, Any]]:
    """AdamW's groups: matrices decay; biases, norms and the decoder's length gains, which start
    at 1 and would be pulled towards 0, do not. Each rate gets its own pair of groups, its
    `lr_scale` applied by the schedule: parameters named by a prefix in `lr_scales` (the first that
    fits), FAST_PARTS at FAST_PART_LR_SCALE, the rest at 1. The order is fixed (1, then the other
    scales as first met) so that a resumed run's saved optimizer state fits its groups again."""
    unused = [prefix for prefix, _ in lr_scales if not any(n.startswith(prefix) for n, _ in model.named_parameters())]
    if unused:
        raise TrainingError(f"--lr-scales: no parameter's name starts with {', '.join(unused)}; the model's "
                            f"parameters are named like {next(iter(dict(model.named_parameters())))}")

    def scale_of(name: str) -> float:
        for prefix, scale in lr_scales:
            if name.startswith(prefix):
                return scale
        return FAST_PART_LR_SCALE if name.startswith(FAST_PARTS) else 1.0

    by_scale: dict[float, list[tuple[str, torch.nn.Parameter]]] = {1.0: []}
    for name, p in model.named_parameters():
        by_scale.setdefault(scale_of(name), []).append((name, p))
    groups = []
    for scale, named in by_scale.items():
        decay = [p for name, p in named if p.dim() >= 2 and name not in UNDECAYED_MATRICES]
        no_decay = [p for name, p in named if p.dim() < 2 or name in UNDECAYED_MATRICES]
        for params, decay_rate in ((decay, weight_decay), (no_decay, 0.0)):
            if params or scale == 1.0:
                groups.append({"params": params, "weight_decay": decay_rate, "lr_scale": scale})
    return groups


def _with_new_part(model: StreamerModel, model_cfg: ModelConfig, part: str | tuple[str, ...],
                   cfg: TrainConfig) -> StreamerModel:
    """`model`'s weights in a model of `model_cfg`, which adds the part whose weights are named
    `part...` (the alignment head, the memory gates, the age slopes, the length gains, the
    first-sight head and cues, the first-sight tokens); that part starts as a new model's would."""
    grown = StreamerModel(model_cfg)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not name.startswith(part) for name in missing):
        raise TrainingError(f"--init {cfg.init}: weights {unexpected or missing} do not fit --preset {cfg.preset}")
    return grown


def _read_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Answer tokens of a batch's questions that have a first-sight read target."""
    reads = batch.get("first_sight_reads")
    if reads is None:
        return torch.zeros(())
    return (batch["answer_mask"] & ((reads >= 0) & batch["question_valid"])[..., None]).sum()


def _clip_drill_tokens(batch: dict[str, torch.Tensor]) -> float:
    """Answer tokens of a batch's clip drills (training.drills.draw_clip_drills)."""
    mask = batch.get("clip_drill_answer_mask")
    return 0.0 if mask is None else float(mask.sum())


def _without_align(cfg: ModelConfig) -> dict[str, Any]:
    """A config as a dict without the alignment head and its loss weight."""
    data = cfg.to_dict()
    data.pop("align")
    data["loss"].pop("align")
    return data


def _config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str:
    """The first few fields that differ between two config dicts, as 'name: a vs b'."""
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            inner = _config_diff(va, vb, f"{prefix}{key}.")
            if inner:
                diffs.append(inner)
        elif va != vb:
            diffs.append(f"{prefix}{key}: {va} vs {vb}")
    return "; ".join(diffs[:4])


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
