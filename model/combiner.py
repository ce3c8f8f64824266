"""Combiners: fuse a snippet's n encoder tokens into m latent tokens x_t.

`TTMCombiner` (default, streaming): a Token Turing Machine. A memory of r tokens is read
together with the inputs (TokenLearner), a small transformer processes the read tokens,
and a second TokenLearner writes the new memory from [memory ; outputs ; inputs]. Cost
per snippet is constant and the memory is the only thing that carries information past
the latent model's window. Its write is the paper's (`memory_update="pool"`) or gated
(`"gated"`): pooling rewrites every slot each snippet, so what the memory held fades within
a few snippets; a gated slot keeps its value until its gate opens.

`TransformerCombiner`: the paper's causal transformer over all snippets' tokens with
chunk-causal attention (windowed to stream, with a ring-buffer KV cache); the last m
features of each chunk are x_t.

Both offer `clip` (a whole clip, for training) and `step(state, tokens, t)` (one snippet of
a stream) that compute the same function, so the model steps either without asking which.
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import ModelConfig
from model.layers import Block, TokenLearner, ring_validity, rope_angles
from model.state import State, StateSpec


class MemoryGate(nn.Module):
    """Per-slot update gate: new slot = old + g·(written − old), g = sigmoid(w·[old; written] + b).

    The biases start spread over timescales from about one snippet to about a minute of
    snippets (g from 0.95 down to 0.007), so some slots hold what they saw from the first
    step, and w (zero at first) learns when an event is worth writing."""

    def __init__(self, dim: int, slots: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2 * dim))
        self.bias = nn.Parameter(torch.linspace(3.0, -5.0, slots))

    def forward(self, old: torch.Tensor, old_normed: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(torch.cat((old_normed, written), dim=-1) @ self.weight + self.bias)
        return old + gate.unsqueeze(-1) * (written - old)


class TTMCombiner(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.combiner
        self.cfg = cfg
        d = c.dim
        self.inp = nn.Linear(cfg.encoder.dim, d)
        self.memory_init = nn.Parameter(torch.randn(c.memory_tokens, d) * 0.02)
        self.memory_pos = nn.Parameter(torch.zeros(c.memory_tokens, d))
        self.kind_emb = nn.Parameter(torch.zeros(3, d))  # memory, input, processed
        self.memory_norm = nn.LayerNorm(d)
        self.read = TokenLearner(d, c.read_tokens, c.token_learner_hidden)
        self.process = nn.ModuleList(Block(d, c.heads, c.mlp_ratio) for _ in range(c.process_layers))
        self.process_norm = nn.LayerNorm(d)
        self.write = TokenLearner(d, c.memory_tokens, c.token_learner_hidden)
        self.output = TokenLearner(d, c.out_tokens, c.token_learner_hidden)
        self.write_gate = MemoryGate(d, c.memory_tokens) if c.memory_update == "gated" else None

    @property
    def memory_tokens(self) -> int:
        return self.cfg.combiner.memory_tokens

    def state_spec(self, batch_size: int) -> StateSpec:
        c = self.cfg.combiner
        return {"memory": ((batch_size, c.memory_tokens, c.dim), torch.float32)}

    def init_state(self, batch_size: int, device) -> State:
        memory = self.memory_init.detach().to(device=device, dtype=torch.float32)
        return {"memory": memory.expand(batch_size, -1, -1).clone()}

    def _step(self, memory: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem = self.memory_norm(memory) + self.memory_pos + self.kind_emb[0]
        inp = self.inp(tokens) + self.kind_emb[1]
        processed = self.read(torch.cat((mem, inp), dim=1))
        for block in self.process:
            processed = block(processed)
        processed = self.process_norm(processed)
        new_memory = self.write(torch.cat((mem, processed + self.kind_emb[2], inp), dim=1))
        if self.write_gate is not None:
            new_memory = self.write_gate(memory, mem, new_memory)
        return self.output(processed), new_memory

    def clip(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [B, T, n, de] -> x [B, T, m, d], memories [B, T+1, r, d] (memory after t snippets)."""
        b = tokens.shape[0]
        memory = self.memory_init.expand(b, -1, -1)
        memories, xs = [memory], []
        for t in range(tokens.shape[1]):
            x, memory = self._step(memory, tokens[:, t])
            xs.append(x)
            memories.append(memory)
        return torch.stack(xs, dim=1), torch.stack(memories, dim=1)

    def step(self, state: State, tokens: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One snippet per stream; the memory carries the past, so the index `t` is not needed."""
        x, memory = self._step(state["memory"], tokens)
        return x, {"memory": memory}


class TransformerCombiner(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.combiner
        self.cfg = cfg
        self.chunk = cfg.snippet_tokens + c.out_tokens
        self.inp = nn.Linear(cfg.encoder.dim, c.dim)
        self.queries = nn.Parameter(torch.randn(c.out_tokens, c.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim)

    @property
    def memory_tokens(self) -> int:
        return 0

    def _window(self) -> int:
        window = self.cfg.combiner.window
        if window is None:
            raise ValueError(
                "the transformer combiner streams only with a bounded window: set combiner.window "
                "(chunks of attention context) in the model config"
            )
        return window

    def state_spec(self, batch_size: int) -> StateSpec:
        c = self.cfg.combiner
        shape = (batch_size, c.layers, c.heads, self._window() * self.chunk, c.dim // c.heads)
        return {"combiner_k": (shape, torch.float32), "combiner_v": (shape, torch.float32)}

    def init_state(self, batch_size: int, device) -> State:
        return {name: torch.zeros(shape, dtype=dtype, device=device)
                for name, (shape, dtype) in self.state_spec(batch_size).items()}

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.inp(tokens)
        return torch.cat((x, self.queries.expand(*x.shape[:-2], -1, -1)), dim=-2)

    def clip(self, tokens: torch.Tensor) -> tuple[torch.Tensor, None]:
        """tokens [B, T, n, de] -> x [B, T, m, d] (no memory: the window is the context)."""
        b, t = tokens.shape[:2]
        c = self.cfg.combiner
        x = self._inputs(tokens).reshape(b, t * self.chunk, c.dim)
        rope = rope_angles(torch.arange(t * self.chunk, device=x.device), c.dim // c.heads)
        for block in self.blocks:
            x = block.chunk_causal(x, self.chunk, c.window, rope)
        x = self.norm(x).view(b, t, self.chunk, c.dim)
        return x[:, :, -c.out_tokens:], None

    def step(self, state: State, tokens: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One snippet per stream; `t` [B] is each stream's snippet index."""
        c = self.cfg.combiner
        window = self._window()
        x = self._inputs(tokens)
        positions = t[:, None] * self.chunk + torch.arange(self.chunk, device=x.device)
        rope = rope_angles(positions, c.dim // c.heads)
        slot = torch.remainder(t, window)
        valid = ring_validity(t, window, self.chunk)
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block.ring_step(x, rope, state["combiner_k"][:, i], state["combiner_v"][:, i], slot, valid)
            ks.append(k)
            vs.append(v)
        x = self.norm(x)
        return x[:, -c.out_tokens:], {"combiner_k": torch.stack(ks, 1), "combiner_v": torch.stack(vs, 1)}


def build_combiner(cfg: ModelConfig) -> TTMCombiner | TransformerCombiner:
    return TTMCombiner(cfg) if cfg.combiner.kind == "ttm" else TransformerCombiner(cfg)
