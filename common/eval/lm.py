"""Language models behind one small interface, so the eval harness can score any of them the same way.

    lm = GPTLM(trained.model, name="sft", chat=True)       # our GPT checkpoints (character tokenizer)
    lm = HFLM(hf_model, hf_tokenizer, name="gpt2")          # any transformers causal LM
    lm.loglikelihood([("What is 2 + 2?", " 4")])            # [(log p(" 4" | context), greedy?)]
    lm.loglikelihood_rolling(["a whole document"])          # [sum of log p over every token of it]
    lm.generate(["Once upon a time"], until=["."], max_new=40)

The three requests are the ones EleutherAI's lm-evaluation-harness builds every task from:

- `loglikelihood(context, continuation)`: the summed log-probability (nats) of the continuation's tokens given
  the context, and whether greedy decoding would have produced exactly those tokens. Context and
  continuation are encoded separately and joined, so the continuation's tokens are the same whatever
  precedes them; the context is cut from the left when the pair is longer than the model's window.
- `loglikelihood_rolling(text)`: the log-probability of a whole text, every token predicted once, with
  as much preceding context as the window allows (windows advance by `stride` tokens; the first token is
  conditioned on the model's document separator). Perplexity and bits per byte come from this.
- `generate(prompt, until, max_new)`: greedy decoding until any stop string or `max_new` tokens; the
  returned text stops before the stop string.

A subclass supplies `encode`, `decode`, `max_length`, `prefix` (the separator a document follows) and
`logits(ids)`; batching, padding and window bookkeeping live here once. Rows are padded on the right,
where a causal model never looks, so a batch scores exactly what one row alone scores (tested).
`chat=True` marks a model fine-tuned on the chat template: tasks posed as instructions are wrapped in
it (`apply_chat`), other tasks are scored on the raw text.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.data.chat import ChatTokenizer
from common.data.instruct import ASSISTANT, END, USER


class LM:
    """Shared request logic; subclasses provide tokenisation and a logits function."""

    name = "lm"
    chat = False
    batch_size = 64

    # --- what a subclass provides
    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    @property
    def max_length(self) -> int:
        raise NotImplementedError

    @property
    def prefix(self) -> list[int]:
        """Token ids a document is conditioned on before its first token."""
        raise NotImplementedError

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) next-token logits."""
        raise NotImplementedError

    # --- the harness's interface
    def apply_chat(self, text: str) -> str:
        """An instruction as this model expects it: inside the chat template for a chat model."""
        return f"{USER}{text}{ASSISTANT}" if self.chat else text

    def describe(self) -> dict:
        return {"name": self.name, "class": type(self).__name__, "chat": self.chat, "max_length": self.max_length}

    @torch.no_grad()
    def _score_rows(self, rows: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """rows: (input ids incl. the scored tokens, n scored at the end) -> (sum log p, all greedy)."""
        out: list[tuple[float, bool]] = [(0.0, True)] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))   # similar lengths share a batch
        for b0 in range(0, len(order), self.batch_size):
            idx = order[b0:b0 + self.batch_size]
            T = max(len(rows[i][0]) for i in idx) - 1
            x = torch.zeros(len(idx), T, dtype=torch.long)
            for r, i in enumerate(idx):
                ids = rows[i][0]
                x[r, :len(ids) - 1] = torch.tensor(ids[:-1])
            logp = F.log_softmax(self.logits(x).float(), dim=-1)
            for r, i in enumerate(idx):
                ids, n = rows[i]
                pos = torch.arange(len(ids) - 1 - n, len(ids) - 1)
                tgt = torch.tensor(ids[-n:])
                lp = logp[r, pos]
                out[i] = (float(lp.gather(-1, tgt[:, None]).sum()), bool((lp.argmax(-1) == tgt).all()))
        return out

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(log p(continuation | context) in nats, greedy match) for each (context, continuation)."""
        rows = []
        for ctx, cont in pairs:
            c, k = self.encode(ctx) or self.prefix, self.encode(cont)
            if not k:
                raise ValueError(f"empty continuation after context {ctx[-40:]!r}")
            ids = (c + k)[-(self.max_length + 1):]
            rows.append((ids, min(len(k), len(ids) - 1)))
        return self._score_rows(rows)

    def loglikelihood_rolling(self, texts: list[str], stride: int | None = None) -> list[float]:
        """Sum of log p over every token of each text, in windows of max_length advancing by `stride`
        (default half the window: each scored token sees at least half a window of context)."""
        L = self.max_length
        stride = stride or L // 2
        rows, owner = [], []
        for t, text in enumerate(texts):
            ids = self.prefix + self.encode(text)
            n = len(ids) - 1                       # tokens to predict: all of the text's
            end = min(L, n)
            rows.append((ids[:end + 1], end))      # the first window predicts its every token
            owner.append(t)
            while end < n:
                new_end = min(end + stride, n)
                start = max(0, new_end - L)
                rows.append((ids[start:new_end + 1], new_end - end))
                owner.append(t)
                end = new_end
        totals = [0.0] * len(texts)
        for t, (lp, _) in zip(owner, self._score_rows(rows)):
            totals[t] += lp
        return totals

    @torch.no_grad()
    def generate(self, prompts: list[str], until: list[str], max_new: int) -> list[str]:
        """Greedy continuation of each prompt, cut before the first stop string (or after max_new tokens)."""
        out = [""] * len(prompts)
        stops = [s for s in until if s]
        for b0 in range(0, len(prompts), self.batch_size):
            rows = {b0 + i: self.encode(p)[-(self.max_length - 1):] or self.prefix
                    for i, p in enumerate(prompts[b0:b0 + self.batch_size])}
            new = {i: [] for i in rows}
            for _ in range(max_new):
                live = list(rows)
                if not live:
                    break
                T = max(len(rows[i]) for i in live)
                x = torch.zeros(len(live), T, dtype=torch.long)
                for r, i in enumerate(live):
                    x[r, :len(rows[i])] = torch.tensor(rows[i])
                logits = self.logits(x)
                last = torch.tensor([len(rows[i]) - 1 for i in live])
                nxt = logits[torch.arange(len(live)), last].argmax(-1)
                for r, i in enumerate(live):
                    new[i].append(int(nxt[r]))
                    rows[i] = (rows[i] + [int(nxt[r])])[-self.max_length:]
                    text = self.decode(new[i])
                    if any(s in text for s in stops):
                        del rows[i]
            for i, ids in new.items():
                text = self.decode(ids)
                cut = min([text.index(s) for s in stops if s in text], default=len(text))
                out[i] = text[:cut]
        return out


class GPTLM(LM):
    """One of our `GPT` checkpoints with the character tokenizer of Sprints 5-6 (`ChatTokenizer`)."""

    def __init__(self, model, name: str = "gpt", chat: bool = False, tokenizer: ChatTokenizer | None = None,
                 batch_size: int = 64):
        self.model, self.name, self.chat, self.batch_size = model.eval(), name, chat, batch_size
        self.tok = tokenizer or ChatTokenizer()
        self.device = next(model.parameters()).device

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def decode(self, ids) -> str:
        return self.tok.decode(ids)

    @property
    def max_length(self) -> int:
        return self.model.cfg.block_size

    @property
    def prefix(self) -> list[int]:
        return self.tok.encode("\n")

    def generate(self, prompts, until, max_new):
        # a chat model ends its turn with END; stop there too
        return super().generate(prompts, list(until) + ([END] if self.chat else []), max_new)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids.to(self.device))[0]


class HFLM(LM):
    """Any `transformers` causal LM (`AutoModelForCausalLM`) with its tokenizer (anything with encode/decode)."""

    def __init__(self, model, tokenizer, name: str = "hf", chat: bool = False, batch_size: int = 16):
        self.model, self.tokenizer, self.name, self.chat = model.eval(), tokenizer, name, chat
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    def encode(self, text: str) -> list[int]:
        try:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        except TypeError:                       # a plain tokenizer without that keyword
            return list(self.tokenizer.encode(text))

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids))

    @property
    def max_length(self) -> int:
        cfg = self.model.config
        for key in ("n_positions", "max_position_embeddings", "n_ctx"):
            if getattr(cfg, key, None):
                return int(getattr(cfg, key))
        return 2048

    @property
    def prefix(self) -> list[int]:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return [eos] if eos is not None else self.encode("\n")

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids.to(self.device)).logits
