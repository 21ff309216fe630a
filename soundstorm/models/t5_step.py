"""T5 sampling one token at a time with its own key/value cache, without `generate()`.

The T2S model is small (d_model 256, 4 decoder layers): one decoder step is ~5 M multiply-adds, tens
of microseconds of arithmetic, yet `transformers`' `generate()` took ~9 ms a token on a 2-core CPU
(6.8 s for the 750 tokens of 30 s), nearly all of it per-step overhead: the cache classes, the
logits-processor machinery, the mask and position-bias rebuilt at every step. `T5Stepper` runs the
same arithmetic as `T5ForConditionalGeneration` in eval mode (RMS norms, unscaled attention with the
first layer's relative position bias shared by all layers, gated-GELU feed-forward, the tied output
scaled by d_model^-0.5) on copies of the Hugging Face module's weights stored transposed ([in, out],
so that a step's row vector times each matrix runs 1.25x faster here; 20 MB more), with the query, key
and value projections fused, the position bias looked up by distance from a table built once, and the
cross-attention folded with its projections once per text. It samples as `generate(do_sample=True)`
does (the step's guard, then temperature, then top-k, then one draw of `torch.multinomial` from the
global generator), so the same seed gives the same tokens up to float rounding (`tests/test_t2s.py`
holds its tokens to `generate()`'s and its logits to a teacher-forced pass). A step reads every weight
once (20 MB in fp32): it is bound by memory, and runs on one thread.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from soundstorm.models.positions import sinusoids


def _rms(x, weight, eps):  # T5LayerNorm: no mean, no bias
    return F.rms_norm(x, weight.shape, weight, eps)


def _t(weight):  # a Linear's weight [out, in] -> [in, out], contiguous
    return weight.detach().t().contiguous()


class T5Stepper:
    """Incremental decoding of one sequence through a `T5ForConditionalGeneration` (eval, float32)."""

    def __init__(self, model, positions: bool = False):
        """`positions`: the T5 was trained with sinusoidal absolute positions added to its input embeddings
        (`t2s.with_positions`), so the stepper adds them too."""
        self.positions = positions
        c = model.config
        if c.feed_forward_proj != "gated-gelu" or c.dense_act_fn != "gelu_new" or not c.tie_word_embeddings:
            raise ValueError("T5Stepper handles the T2S layout: gated-gelu (gelu_new), tied embeddings")
        self.model, self.heads, self.dk, self.eps = model, c.num_heads, c.d_kv, c.layer_norm_epsilon
        self.scale_out = c.d_model**-0.5 if getattr(c, "scale_decoder_outputs", True) else 1.0
        decoder = model.decoder
        self.embed = decoder.embed_tokens.weight
        # Every matrix a step multiplies by is stored transposed, [in, out] and contiguous, and read as
        # x @ W_t: a row vector times such a matrix ran 1.25x faster here than against [out, in] rows
        # (one thread; the same products, in another order of summation).
        self.out_t, self.out_bias = _t(model.lm_head.weight), model.lm_head.bias
        pack = _t
        self.layers = []
        for block in decoder.block:
            attn, cross, ff = (layer for layer in block.layer)
            s, x = attn.SelfAttention, cross.EncDecAttention
            self.layers.append(
                {
                    "ln1": attn.layer_norm.weight,
                    "qkv": pack(torch.cat([s.q.weight, s.k.weight, s.v.weight])),
                    "o": pack(s.o.weight),
                    "ln2": cross.layer_norm.weight,
                    "xq": x.q.weight,
                    "xkv": torch.cat([x.k.weight, x.v.weight]),
                    "xo": x.o.weight,
                    "ln3": ff.layer_norm.weight,
                    "wi": pack(torch.cat([ff.DenseReluDense.wi_0.weight, ff.DenseReluDense.wi_1.weight])),
                    "wo": pack(ff.DenseReluDense.wo.weight),
                }
            )
        self.final = decoder.final_layer_norm.weight
        self.bias_attention = decoder.block[0].layer[0].SelfAttention

    def _distance_bias(self, length: int):
        """[length, H]: the self-attention bias of a key `d` positions before the query, d = 0..length-1."""
        attention = self.bias_attention
        # memory - query position: causal, never positive
        relative = -torch.arange(length, device=self.embed.device)
        buckets = attention._relative_position_bucket(
            relative,
            bidirectional=False,
            num_buckets=attention.relative_attention_num_buckets,
            max_distance=attention.relative_attention_max_distance,
        )
        return attention.relative_attention_bias(buckets)

    def sample(self, *args, **kwargs) -> list[int]:
        """`_sample` on one CPU thread: its operations are too small to share, and a second thread pool
        (CTranslate2's, once Whisper has run in the process) made two threads slower than one here."""
        if self.embed.device.type != "cpu":
            return self._sample(*args, **kwargs)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._sample(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def _folded_cross_attention(self, encoded: torch.Tensor) -> tuple[list, int]:
        """Cross-attention folded with its projections, once per text: the scores are x @ (Wq_h^T K_h^T)
        and the output sum_h p_h @ (V_h Wo_h^T), two matrix products a step instead of four. Per layer
        ([D, H * S] scores, [H * S, D] values), and S, the encoded text's length."""
        H, dk, S = self.heads, self.dk, encoded.shape[0]
        cross = []
        for layer in self.layers:
            k, v = F.linear(encoded, layer["xkv"]).view(S, 2, H, dk).permute(1, 2, 0, 3)  # [H, S, dk] each
            wq = layer["xq"].view(H, dk, -1)  # [H, dk, D]
            scores = torch.matmul(wq.transpose(1, 2), k.transpose(1, 2))  # [H, D, S]
            mixed = torch.matmul(v, layer["xo"].view(-1, H, dk).permute(1, 2, 0))  # [H, S, D]
            cross.append((scores.permute(1, 0, 2).reshape(-1, H * S).contiguous(), mixed.reshape(H * S, -1)))
        return cross, S

    @torch.inference_mode()
    def _sample(
        self,
        input_ids: list[int],
        prefix: list[int],
        max_new: int,
        guard: Callable[[torch.Tensor, int, int], None],
        end: int,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> list[int]:
        """Continue `prefix` (the decoder's forced start) after encoding `input_ids`; up to `max_new`
        tokens, stopping after `end`. `guard(scores [V], length, last_token)` edits the step's scores in
        place before temperature and top-k (what a LogitsProcessor does); temperature 0 is greedy. Every
        token's logit is computed, forbidden ones too: `torch.multinomial` draws one number per entry, so
        a shorter vocabulary would change the draws."""
        H, dk, eps = self.heads, self.dk, self.eps
        device = self.embed.device
        ids = torch.tensor([input_ids], device=device)
        if self.positions:
            inputs = self.embed[ids] + sinusoids(ids.shape[1], self.embed.shape[1], device)
            encoded = self.model.encoder(inputs_embeds=inputs).last_hidden_state[0]  # [S, D]
        else:
            encoded = self.model.encoder(input_ids=ids).last_hidden_state[0]  # [S, D]
        cross, S = self._folded_cross_attention(encoded)
        total = len(prefix) + max_new
        if self.positions:
            absolute = sinusoids(total, self.embed.shape[1], device)
        # [H, total]: column j holds the bias of a key total-1-j positions back; a query at t reads the last t+1
        by_distance = self._distance_bias(total).flip(0).t().contiguous()
        keys = [torch.zeros(H, dk, total, device=device) for _ in self.layers]
        values = [torch.zeros(H, total, dk, device=device) for _ in self.layers]
        out: list[int] = []
        token = prefix[0]
        for t in range(total):
            x = self.embed[token][None]  # [1, D]
            if self.positions:
                x = x + absolute[t]
            position_bias = by_distance[:, total - 1 - t :][:, None]  # [H, 1, t+1]: keys 0..t
            for layer, k_cache, v_cache, (xk, xv) in zip(self.layers, keys, values, cross, strict=True):
                q, k, v = torch.mm(_rms(x, layer["ln1"], eps), layer["qkv"]).view(3, H, dk)
                k_cache[:, :, t] = k
                v_cache[:, t] = v
                scores = torch.matmul(q[:, None], k_cache[:, :, : t + 1]) + position_bias  # [H, 1, t+1]
                attended = torch.matmul(torch.softmax(scores, -1), v_cache[:, : t + 1])  # [H, 1, dk]
                x = torch.addmm(x, attended.reshape(1, H * dk), layer["o"])
                probs = torch.softmax(torch.mm(_rms(x, layer["ln2"], eps), xk).view(H, S), -1)  # [H, S]
                x = torch.addmm(x, probs.view(1, H * S), xv)
                gate, linear = torch.mm(_rms(x, layer["ln3"], eps), layer["wi"]).chunk(2, -1)
                x = torch.addmm(x, F.gelu(gate, approximate="tanh") * linear, layer["wo"])  # gelu_new
            if t + 1 < len(prefix):  # still reading the forced prefix
                token = prefix[t + 1]
                continue
            x = _rms(x, self.final, eps) * self.scale_out
            scores = torch.mm(x, self.out_t)[0]  # [V], float32
            if self.out_bias is not None:
                scores = scores + self.out_bias
            guard(scores, len(out), out[-1] if out else -1)
            if temperature <= 0:
                token = int(scores.argmax())
            else:
                if temperature != 1.0:
                    scores = scores / temperature
                if top_k:
                    kth = torch.topk(scores, min(top_k, scores.shape[-1]))[0][-1]
                    scores = scores.masked_fill(scores < kth, float("-inf"))
                token = int(torch.multinomial(torch.softmax(scores, -1)[None], num_samples=1))
            out.append(token)
            if token == end or len(out) == max_new:
                break
        return out
