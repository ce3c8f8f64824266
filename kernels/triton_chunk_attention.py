"""Triton kernels for chunk-causal attention: forward, delta preprocess, dK/dV pass, dQ pass.

Imported lazily by `kernels.triton_backend`, which holds the launchers; under
TRITON_INTERPRET=1 the same kernels run in Triton's CPU interpreter with one fixed tiling.
The TUNE_* arguments are the bucketed shape (`kernels.tuning.tune_key`): the kernels do not
read them, the autotuner keys on them.

Structure (per program, one block of rows): the chunk arithmetic gives the range of the
other side that any row of the block can see, [lo, hi), and the range that every row sees,
[full_lo, full_hi). Blocks outside [lo, hi) are never visited, blocks inside
[full_lo, full_hi) run without a mask, and only the few blocks at the two edges are masked.
Scores are kept in base 2 (scale · log2 e folded in) so the softmax uses exp2.

Why one module of ~450 lines: the forward pass and both backward passes walk the same block
ranges with the same helpers; side by side, their masks and scalings can be checked against
each other. The launchers are in `kernels.triton_backend`.
"""

import torch
import triton
import triton.language as tl

INTERPRET = bool(triton.knobs.runtime.interpret)
# Triton 3.5's interpreter cannot use runtime scalars as `range` bounds with NumPy >= 2.4
# (it converts shape-[1] arrays with int()), so interpreted kernels walk their blocks with
# `while`; compiled kernels keep `for`, which Triton software-pipelines. The block bodies
# are shared, so the interpreter tests check the same arithmetic the GPU runs.
_WHILE_LOOPS = tl.constexpr(INTERPRET)
LOG2E = 1.4426950408889634


# ----------------------------------------------------------------------------- helpers


@triton.jit
def _visible(pos_q, pos_k, CHUNK, WINDOW, N_K):
    """[M, N] mask: query at pos_q sees key at pos_k (rows are queries)."""
    cq = (pos_q // CHUNK)[:, None]
    ck = (pos_k // CHUNK)[None, :]
    return (ck <= cq) & (ck > cq - WINDOW) & (pos_k < N_K)[None, :]


@triton.jit
def _visible_t(pos_k, pos_q, CHUNK, WINDOW, N_K):
    """[N, M] mask, the transpose of `_visible` (rows are keys)."""
    ck = (pos_k // CHUNK)[:, None]
    cq = (pos_q // CHUNK)[None, :]
    return (ck <= cq) & (ck > cq - WINDOW) & (pos_k < N_K)[:, None]


@triton.jit
def _key_range(p_first, p_last, CHUNK, WINDOW, N_K):
    """Keys seen by some / by every query with positions in [p_first, p_last]."""
    c_first = p_first // CHUNK
    c_last = p_last // CHUNK
    lo = tl.maximum(c_first - WINDOW + 1, 0) * CHUNK
    hi = tl.minimum((c_last + 1) * CHUNK, N_K)
    full_lo = tl.maximum(c_last - WINDOW + 1, 0) * CHUNK
    full_hi = tl.minimum((c_first + 1) * CHUNK, N_K)
    return lo, hi, full_lo, full_hi


@triton.jit
def _query_range(k_first, k_last, Q_START, N_Q, CHUNK, WINDOW):
    """Query indices seen by some / by every key with positions in [k_first, k_last].

    int32 arithmetic: `check_arguments` keeps chunk <= N_K and WINDOW <= N_K // CHUNK + 2,
    so (c + WINDOW) * CHUNK stays below 4 * N_K.
    """
    c_first = k_first // CHUNK
    c_last = k_last // CHUNK
    lo = tl.maximum(c_first * CHUNK - Q_START, 0)
    hi = tl.minimum((c_last + WINDOW) * CHUNK - Q_START, N_Q)
    full_lo = tl.maximum(c_last * CHUNK - Q_START, 0)
    full_hi = tl.minimum((c_first + WINDOW) * CHUNK - Q_START, N_Q)
    return lo, hi, full_lo, full_hi


@triton.jit
def _split_blocks(lo, hi, full_lo, full_hi, BLOCK: tl.constexpr):
    """Block-aligned starts: masked [a, b), unmasked [b, c), masked [c, d)."""
    a = (lo // BLOCK) * BLOCK
    d = tl.cdiv(hi, BLOCK) * BLOCK
    b = tl.cdiv(full_lo, BLOCK) * BLOCK
    c = (full_hi // BLOCK) * BLOCK
    no_interior = (c <= b).to(tl.int32)
    b = b + (d - b) * no_interior
    c = c + (d - c) * no_interior
    return a, b, c, d


# ----------------------------------------------------------------------------- forward


@triton.jit
def _key_block_scores(q, k_base, v_base, stride_kn, stride_vn, start_n, qk_scale, N_K,
                      BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
                      PRECISION: tl.constexpr):
    """Load one key/value block (bounds-checked only where MASKED) and its scaled scores q·kᵀ."""
    pos_k = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    k_ptrs = k_base + pos_k[:, None] * stride_kn + offs_d[None, :]
    v_ptrs = v_base + pos_k[:, None] * stride_vn + offs_d[None, :]
    if MASKED:
        in_range = (pos_k < N_K)[:, None]
        k = tl.load(k_ptrs, mask=in_range, other=0.0)
        v = tl.load(v_ptrs, mask=in_range, other=0.0)
    else:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    return pos_k, k, v, s


@triton.jit
def _fwd_block(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, pos_q, start_n,
               qk_scale, CHUNK, WINDOW, N_K,
               BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
               PRECISION: tl.constexpr):
    """Fold one key block into the running (acc, l_i, m_i) online-softmax state."""
    pos_k, k, v, s = _key_block_scores(q, k_base, v_base, stride_kn, stride_vn, start_n, qk_scale, N_K,
                                       BLOCK_N, HEAD_DIM, MASKED, PRECISION)
    if MASKED:
        s = tl.where(_visible(pos_q, pos_k, CHUNK, WINDOW, N_K), s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.math.exp2(s - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, pos_q, start, end,
               qk_scale, CHUNK, WINDOW, N_K,
               BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
               PRECISION: tl.constexpr):
    if _WHILE_LOOPS:
        start_n = start
        while start_n < end:
            acc, l_i, m_i = _fwd_block(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, pos_q, start_n,
                                       qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, MASKED, PRECISION)
            start_n += BLOCK_N
    else:
        for start_n in range(start, end, BLOCK_N):
            acc, l_i, m_i = _fwd_block(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, pos_q, start_n,
                                       qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, MASKED, PRECISION)
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE,
                stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_on,
                H, N_Q, N_K, Q_START, CHUNK, WINDOW, qk_scale, TUNE_N_Q, TUNE_N_K, TUNE_CHUNK, TUNE_SPAN,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi_ = (pid_bh % H).to(tl.int64)
    q_base = Q + bi * stride_qb + hi_ * stride_qh
    k_base = K + bi * stride_kb + hi_ * stride_kh
    v_base = V + bi * stride_vb + hi_ * stride_vh
    o_base = O + bi * stride_ob + hi_ * stride_oh

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_Q
    # Padding rows past N_Q take the last real row's position so that no row is empty.
    pos_q = Q_START + tl.minimum(offs_m, N_Q - 1)
    q = tl.load(q_base + offs_m[:, None] * stride_qn + offs_d[None, :], mask=row_ok[:, None], other=0.0)

    p_first = Q_START + pid_m * BLOCK_M
    p_last = Q_START + tl.minimum(pid_m * BLOCK_M + BLOCK_M, N_Q) - 1
    lo, hi, full_lo, full_hi = _key_range(p_first, p_last, CHUNK, WINDOW, N_K)
    a, b, c, d = _split_blocks(lo, hi, full_lo, full_hi, BLOCK_N)

    # A finite start for the running max keeps rows that are fully masked in a block NaN-free.
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, pos_q, a, b,
                               qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, True, PRECISION)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, pos_q, b, c,
                               qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, False, PRECISION)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, pos_q, c, d,
                               qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, True, PRECISION)

    lse = (m_i + tl.math.log2(l_i)) * 0.6931471805599453
    acc = acc / l_i[:, None]
    tl.store(o_base + offs_m[:, None] * stride_on + offs_d[None, :], acc.to(O.dtype.element_ty),
             mask=row_ok[:, None])
    tl.store(LSE + pid_bh.to(tl.int64) * N_Q + offs_m, lse, mask=row_ok)


# ----------------------------------------------------------------------------- backward


@triton.jit
def _bwd_delta_kernel(O, DO, DLSE, DELTA,
                      stride_ob, stride_oh, stride_on, stride_dob, stride_doh, stride_don,
                      H, N_Q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, HAS_DLSE: tl.constexpr):
    """delta_i = sum_d dO_id · O_id - dLSE_i, the softmax-backward row term, in fp32.

    d lse_i / d s_ij = p_ij, so an lse gradient adds p_ij · dLSE_i to ds_ij = p_ij (dp_ij - delta_i):
    it folds into delta. DLSE ([B·H, N_Q], contiguous) is read only when HAS_DLSE.
    """
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi_ = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = (offs_m < N_Q)[:, None]
    o = tl.load(O + bi * stride_ob + hi_ * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :],
                mask=row_ok, other=0.0)
    do = tl.load(DO + bi * stride_dob + hi_ * stride_doh + offs_m[:, None] * stride_don + offs_d[None, :],
                 mask=row_ok, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    if HAS_DLSE:
        delta -= tl.load(DLSE + pid_bh.to(tl.int64) * N_Q + offs_m, mask=offs_m < N_Q, other=0.0)
    tl.store(DELTA + pid_bh.to(tl.int64) * N_Q + offs_m, delta, mask=offs_m < N_Q)


@triton.jit
def _bwd_dkdv_block(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qn, stride_don,
                    pos_k, start_m, qk_scale, Q_START, N_Q, CHUNK, WINDOW, N_K,
                    BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
                    PRECISION: tl.constexpr):
    """Add one query block's contribution to a key block's dK and dV (computed transposed)."""
    idx_q = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = q_base + idx_q[:, None] * stride_qn + offs_d[None, :]
    do_ptrs = do_base + idx_q[:, None] * stride_don + offs_d[None, :]
    if MASKED:
        row_ok = idx_q < N_Q
        q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
        do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)
        lse2 = tl.load(lse_base + idx_q, mask=row_ok, other=0.0) * 1.4426950408889634
        delta = tl.load(delta_base + idx_q, mask=row_ok, other=0.0)
    else:
        q = tl.load(q_ptrs)
        do = tl.load(do_ptrs)
        lse2 = tl.load(lse_base + idx_q) * 1.4426950408889634
        delta = tl.load(delta_base + idx_q)
    s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale
    p_t = tl.math.exp2(s_t - lse2[None, :])
    if MASKED:
        seen = _visible_t(pos_k, Q_START + idx_q, CHUNK, WINDOW, N_K) & row_ok[None, :]
        p_t = tl.where(seen, p_t, 0.0)
    dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
    dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
    ds_t = p_t * (dp_t - delta[None, :])
    dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    return dk, dv


@triton.jit
def _bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qn, stride_don,
                    pos_k, start, end, qk_scale, Q_START, N_Q, CHUNK, WINDOW, N_K,
                    BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
                    PRECISION: tl.constexpr):
    if _WHILE_LOOPS:
        start_m = start
        while start_m < end:
            dk, dv = _bwd_dkdv_block(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qn, stride_don,
                                     pos_k, start_m, qk_scale, Q_START, N_Q, CHUNK, WINDOW, N_K,
                                     BLOCK_M, HEAD_DIM, MASKED, PRECISION)
            start_m += BLOCK_M
    else:
        for start_m in range(start, end, BLOCK_M):
            dk, dv = _bwd_dkdv_block(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qn, stride_don,
                                     pos_k, start_m, qk_scale, Q_START, N_Q, CHUNK, WINDOW, N_K,
                                     BLOCK_M, HEAD_DIM, MASKED, PRECISION)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV,
                     stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                     stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_don,
                     stride_dkb, stride_dkh, stride_dkn, stride_dvb, stride_dvh, stride_dvn,
                     H, N_Q, N_K, Q_START, CHUNK, WINDOW, qk_scale, sm_scale,
                     TUNE_N_Q, TUNE_N_K, TUNE_CHUNK, TUNE_SPAN,
                     HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     PRECISION: tl.constexpr):
    """One program per key block; walks the query blocks that can see it."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi_ = (pid_bh % H).to(tl.int64)
    q_base = Q + bi * stride_qb + hi_ * stride_qh
    do_base = DO + bi * stride_dob + hi_ * stride_doh
    lse_base = LSE + pid_bh.to(tl.int64) * N_Q
    delta_base = DELTA + pid_bh.to(tl.int64) * N_Q

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    key_ok = (offs_n < N_K)[:, None]
    k = tl.load(K + bi * stride_kb + hi_ * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :],
                mask=key_ok, other=0.0)
    v = tl.load(V + bi * stride_vb + hi_ * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :],
                mask=key_ok, other=0.0)

    k_first = pid_n * BLOCK_N
    k_last = tl.minimum(pid_n * BLOCK_N + BLOCK_N, N_K) - 1
    lo, hi, full_lo, full_hi = _query_range(k_first, k_last, Q_START, N_Q, CHUNK, WINDOW)
    a, b, c, d = _split_blocks(lo, hi, full_lo, full_hi, BLOCK_M)

    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qn, stride_don,
                             offs_n, a, b, qk_scale, Q_START, N_Q, CHUNK, WINDOW, N_K,
                             BLOCK_M, HEAD_DIM, True, PRECISION)
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qn, stride_don,
                             offs_n, b, c, qk_scale, Q_START, N_Q, CHUNK, WINDOW, N_K,
                             BLOCK_M, HEAD_DIM, False, PRECISION)
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qn, stride_don,
                             offs_n, c, d, qk_scale, Q_START, N_Q, CHUNK, WINDOW, N_K,
                             BLOCK_M, HEAD_DIM, True, PRECISION)
    dk = dk * sm_scale
    tl.store(DK + bi * stride_dkb + hi_ * stride_dkh + offs_n[:, None] * stride_dkn + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=key_ok)
    tl.store(DV + bi * stride_dvb + hi_ * stride_dvh + offs_n[:, None] * stride_dvn + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=key_ok)


@triton.jit
def _bwd_dq_block(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, pos_q, start_n,
                  qk_scale, CHUNK, WINDOW, N_K,
                  BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
                  PRECISION: tl.constexpr):
    """Add one key block's contribution to a query block's dQ."""
    pos_k, k, v, s = _key_block_scores(q, k_base, v_base, stride_kn, stride_vn, start_n, qk_scale, N_K,
                                       BLOCK_N, HEAD_DIM, MASKED, PRECISION)
    p = tl.math.exp2(s - lse2[:, None])
    if MASKED:
        p = tl.where(_visible(pos_q, pos_k, CHUNK, WINDOW, N_K), p, 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    ds = p * (dp - delta[:, None])
    dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    return dq


@triton.jit
def _bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, pos_q, start, end,
                  qk_scale, CHUNK, WINDOW, N_K,
                  BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
                  PRECISION: tl.constexpr):
    if _WHILE_LOOPS:
        start_n = start
        while start_n < end:
            dq = _bwd_dq_block(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, pos_q, start_n,
                               qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, MASKED, PRECISION)
            start_n += BLOCK_N
    else:
        for start_n in range(start, end, BLOCK_N):
            dq = _bwd_dq_block(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, pos_q, start_n,
                               qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, MASKED, PRECISION)
    return dq


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ,
                   stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_don,
                   stride_dqb, stride_dqh, stride_dqn,
                   H, N_Q, N_K, Q_START, CHUNK, WINDOW, qk_scale, sm_scale,
                   TUNE_N_Q, TUNE_N_K, TUNE_CHUNK, TUNE_SPAN,
                   HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   PRECISION: tl.constexpr):
    """One program per query block; walks the same key blocks as the forward."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi_ = (pid_bh % H).to(tl.int64)
    k_base = K + bi * stride_kb + hi_ * stride_kh
    v_base = V + bi * stride_vb + hi_ * stride_vh

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_Q
    pos_q = Q_START + tl.minimum(offs_m, N_Q - 1)
    q = tl.load(Q + bi * stride_qb + hi_ * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + bi * stride_dob + hi_ * stride_doh + offs_m[:, None] * stride_don + offs_d[None, :],
                 mask=row_ok[:, None], other=0.0)
    lse2 = tl.load(LSE + pid_bh.to(tl.int64) * N_Q + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * N_Q + offs_m, mask=row_ok, other=0.0)

    p_first = Q_START + pid_m * BLOCK_M
    p_last = Q_START + tl.minimum(pid_m * BLOCK_M + BLOCK_M, N_Q) - 1
    lo, hi, full_lo, full_hi = _key_range(p_first, p_last, CHUNK, WINDOW, N_K)
    a, b, c, d = _split_blocks(lo, hi, full_lo, full_hi, BLOCK_N)

    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, pos_q, a, b,
                       qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, True, PRECISION)
    dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, pos_q, b, c,
                       qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, False, PRECISION)
    dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, pos_q, c, d,
                       qk_scale, CHUNK, WINDOW, N_K, BLOCK_N, HEAD_DIM, True, PRECISION)
    dq = dq * sm_scale
    tl.store(DQ + bi * stride_dqb + hi_ * stride_dqh + offs_m[:, None] * stride_dqn + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])


# ----------------------------------------------------------------------------- tuning


def _configs(pairs: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in pairs]


def _is_hopper_or_newer() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


# (BLOCK_M, BLOCK_N, num_warps, num_stages). Hopper has more shared memory and profits from
# deeper pipelines and 8 warps on 128-row tiles; Ampere (A100: 164 KB smem) from shallower ones.
_HOPPER_FWD = [(128, 128, 8, 3), (128, 64, 8, 3), (128, 64, 4, 3), (128, 32, 4, 4), (64, 64, 4, 3),
               (64, 128, 4, 3), (64, 32, 4, 4), (32, 64, 4, 3), (32, 32, 4, 3)]
_AMPERE_FWD = [(128, 64, 4, 3), (128, 64, 8, 2), (128, 32, 4, 3), (64, 64, 4, 3), (64, 32, 4, 3),
               (32, 64, 4, 3), (32, 32, 4, 2)]
_HOPPER_DKDV = [(32, 128, 8, 3), (64, 128, 8, 3), (32, 64, 4, 3), (64, 64, 4, 3), (32, 32, 4, 3)]
_AMPERE_DKDV = [(32, 128, 8, 2), (32, 64, 4, 3), (64, 64, 4, 2), (32, 32, 4, 2)]
_HOPPER_DQ = [(128, 32, 8, 3), (128, 64, 8, 3), (64, 64, 4, 3), (64, 32, 4, 3), (32, 32, 4, 3)]
_AMPERE_DQ = [(128, 32, 8, 2), (64, 64, 4, 3), (64, 32, 4, 3), (32, 32, 4, 2)]

# The interpreter runs one fixed, deliberately small and unequal tiling: blocks that do not
# line up with each other or with the chunk exercise every masked/unmasked edge on tiny inputs.
INTERPRET_TILES = {
    "fwd": {"BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1},
    "dkdv": {"BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1},
    "dq": {"BLOCK_M": 32, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1},
}


def _prune_by_rows(rows_bucket: str, row_block: str):
    """Drop tiles taller than the bucketed number of rows: streaming calls have few queries."""

    def prune(configs, named_args, **kwargs):
        rows = max(32, int(named_args[rows_bucket]))
        kept = [cfg for cfg in configs if cfg.kwargs[row_block] <= rows]
        return kept or configs

    return prune


# The autotuner ignores key names that are not arguments, so a test checks these against the kernels.
TUNE_KEY = ["TUNE_N_Q", "TUNE_N_K", "TUNE_CHUNK", "TUNE_SPAN", "HEAD_DIM", "PRECISION"]


def _autotuned(kernel, configs: list[triton.Config], rows_bucket: str, row_block: str):
    return triton.autotune(configs, key=TUNE_KEY,
                           prune_configs_by={"early_config_prune": _prune_by_rows(rows_bucket, row_block)})(kernel)


# The launchers run these with fixed tiles (interpreter, pinned tiles) or through TUNED.
fwd_kernel, dkdv_kernel, dq_kernel, delta_kernel = _fwd_kernel, _bwd_dkdv_kernel, _bwd_dq_kernel, _bwd_delta_kernel
DELTA_BLOCK_M = 16 if INTERPRET else 128
if INTERPRET:
    TUNED = {}
else:
    _hopper = _is_hopper_or_newer()
    TUNED = {
        "fwd": _autotuned(_fwd_kernel, _configs(_HOPPER_FWD if _hopper else _AMPERE_FWD), "TUNE_N_Q", "BLOCK_M"),
        "dkdv": _autotuned(_bwd_dkdv_kernel, _configs(_HOPPER_DKDV if _hopper else _AMPERE_DKDV), "TUNE_N_K",
                           "BLOCK_N"),
        "dq": _autotuned(_bwd_dq_kernel, _configs(_HOPPER_DQ if _hopper else _AMPERE_DQ), "TUNE_N_Q", "BLOCK_M"),
    }
