"""A paged-KV simulator: the memory accounting of an LLM server, counted in token slots (day 35).

Unlike `common/nn/kv_cache.py`'s `PagedKVStore`, which keeps real key/value tensors in blocks, this
module moves no tensors: it only counts slots. A fixed budget of `budget` slots (one slot = the KV of
one token, all layers) serves requests that arrive over time. Every step each running request writes
the KV of one more token (its first step writes the whole prompt as well). An allocator decides who
fits:

    contiguous, first-fit in one linear address space [0, budget), reserved up front at admission:
        "max"     max_len slots for every request (room for any possible output)
        "pow2"    the next power of two >= the request's final length (knows the future, over by < 2x)
        "oracle"  exactly the final length (knows the future)
    "paged"       blocks of `block` slots, one more whenever the last one is full; any free block will do

    trace = make_trace(2000, rate=0.2, seed=0)          # arrival step, prompt and output lengths
    res = simulate(trace, "paged", budget=32768, max_len=2048, block=16)
    res.shares()                                        # where the memory went while requests waited
    res.latency                                         # finish - arrival, in steps, per request

The scheduler is first-come first-served with continuous batching (a finished request leaves and a
waiting one joins between any two steps) and stops at the first waiting request that does not fit.
A paged sequence that needs a block when none is free preempts the latest-arrived running request
(vLLM's recompute policy): its blocks are freed and it rejoins the queue at the front, to re-prefill
its prompt and the tokens it had generated.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

import numpy as np

ALLOCATORS = ("max", "pow2", "oracle", "paged")
CLASSES = ("tokens", "future", "never", "external", "short")  # the five shares of memory, see `shares`


@dataclass
class Trace:
    """Requests in arrival order: arrival step, prompt tokens, output tokens (each >= 1, sum <= max_len)."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def final(self) -> np.ndarray:
        return self.prompt + self.output


def make_trace(n: int, rate: float, seed: int, max_len: int = 2048, prompt_median: float = 128,
               prompt_sigma: float = 1.0, output_median: float = 192, output_sigma: float = 0.9) -> Trace:
    """`n` requests arriving as a Poisson process of `rate` per step (`rate=inf`: all at step 0), with
    lognormal prompt and output lengths (median, sigma of the log), clipped so that prompt + output <= max_len."""
    rng = np.random.default_rng(seed)
    gaps = np.zeros(n) if rate == float("inf") else rng.exponential(1.0 / rate, n)
    arrival = np.floor(np.cumsum(gaps)).astype(np.int64)
    prompt = np.clip(np.rint(rng.lognormal(np.log(prompt_median), prompt_sigma, n)), 1, max_len - 1).astype(np.int64)
    output = np.rint(rng.lognormal(np.log(output_median), output_sigma, n)).astype(np.int64)
    return Trace(arrival, prompt, np.clip(output, 1, max_len - prompt))


def reservation(allocator: str, final: int, max_len: int) -> int:
    """Slots a contiguous allocator reserves at admission for a request that will end at `final` tokens."""
    if allocator == "max":
        return max_len
    if allocator == "pow2":
        return min(1 << (int(final) - 1).bit_length(), max_len)
    if allocator == "oracle":
        return int(final)
    raise ValueError(f"{allocator!r} is not a contiguous allocator; use one of {ALLOCATORS[:3]}")


def paged_slots(tokens: int, block: int) -> int:
    """Slots held by a paged sequence of `tokens` tokens: whole blocks, ceil(tokens / block) of them."""
    return -(-tokens // block) * block


class FirstFit:
    """A linear address space [0, size) handed out in contiguous runs, lowest fitting address first.

    The free space is a sorted list of holes (start, length); freeing merges a run with its neighbours,
    so two adjacent holes never stay apart. `largest()` is the biggest request that fits now.
    >>> s = FirstFit(10); s.alloc(4), s.alloc(4), s.alloc(4)
    (0, 4, None)
    >>> s.free(0, 4); s.holes()
    [(0, 4), (8, 2)]
    """

    def __init__(self, size: int):
        self.starts, self.lengths = [0], [size]
        self.free_total = size

    def alloc(self, n: int) -> int | None:
        """The start of `n` contiguous slots taken from the first hole long enough, or None if none is."""
        # >>> exercise day35.first_fit: take n slots from the start of the first hole with length >= n
        for j, length in enumerate(self.lengths):
            if length >= n:
                start = self.starts[j]
                if length == n:
                    del self.starts[j], self.lengths[j]
                else:
                    self.starts[j] += n
                    self.lengths[j] -= n
                self.free_total -= n
                return start
        return None
        # <<< exercise day35.first_fit

    def free(self, start: int, n: int) -> None:
        """Give back the run [start, start + n), merged with an adjacent hole on either side."""
        self.free_total += n
        j = bisect_left(self.starts, start)
        if j < len(self.starts) and start + n == self.starts[j]:   # touches the next hole
            n += self.lengths[j]
            del self.starts[j], self.lengths[j]
        if j > 0 and self.starts[j - 1] + self.lengths[j - 1] == start:  # touches the previous hole
            self.lengths[j - 1] += n
        else:
            self.starts.insert(j, start)
            self.lengths.insert(j, n)

    def largest(self) -> int:
        return max(self.lengths, default=0)

    def holes(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.lengths))


def slot_classes(allocated, length, final) -> tuple[int, int, int]:
    """Split the slots of running requests (arrays: slots held A, tokens written L, final length F, L <= F)
    into (tokens, future, never): L slots hold token states, min(A, F) - L are reserved for tokens still
    to come, max(A - F, 0) will never hold a token (over-reservation, or the unused tail of a last block)."""
    # >>> exercise day35.slot_classes: sum L, min(A, F) - L and max(A - F, 0) over the requests, as ints
    a, l, f = (np.asarray(x, dtype=np.int64) for x in (allocated, length, final))
    return int(l.sum()), int((np.minimum(a, f) - l).sum()), int(np.maximum(a - f, 0).sum())
    # <<< exercise day35.slot_classes


def grow(running: list[int], length, held, block: int, free_blocks: int) -> tuple[list[int], list[int]]:
    """One step of paged growth: (need, victims). `need` are the running sequences whose blocks are full
    (length a multiple of `block`), so the token they write now needs a new block. If fewer than len(need)
    blocks are free, preempt the latest arrivals (the highest request indices) one by one, each freeing
    held[v] // block blocks and needing none, until the rest fit. Victims are listed latest first.
    >>> grow([0, 1, 2], [16, 5, 32], [16, 16, 32], 16, 1)
    ([0], [2])
    """
    # >>> exercise day35.grow: list who needs a block; preempt the highest indices until the free blocks suffice
    need = [i for i in running if length[i] % block == 0]
    victims, by_arrival = [], sorted(running)
    while len(need) > free_blocks:
        v = by_arrival.pop()
        victims.append(v)
        free_blocks += int(held[v]) // block
        if v in need:
            need.remove(v)
    return need, victims
    # <<< exercise day35.grow


@dataclass
class SimResult:
    """What one simulation measured. `slots` sums each memory class over the memory-bound steps (a request
    waits and memory, not the batch cap, keeps it out); `latency` and `wait` are per request, in steps."""

    allocator: str
    block: int
    budget: int
    trace: Trace
    start: np.ndarray        # the step each request was first admitted
    finish: np.ndarray       # the step after its last token
    preempted: np.ndarray    # times each request was preempted
    steps: int               # busy steps simulated (idle gaps with nothing to run are skipped)
    batch_sum: int           # running requests summed over busy steps
    bound_steps: int
    bound_batch_sum: int
    bound_finished: int      # requests finished at the end of a memory-bound step
    slots: dict

    @property
    def name(self) -> str:
        return f"paged b={self.block}" if self.allocator == "paged" else f"contiguous {self.allocator}"

    @property
    def latency(self) -> np.ndarray:
        return self.finish - self.trace.arrival

    @property
    def wait(self) -> np.ndarray:
        return self.start - self.trace.arrival

    def shares(self) -> dict:
        """Percent of the memory budget in each class, averaged over the memory-bound steps:
        tokens (token states), future (reserved for tokens to come), never (reserved, never used),
        external (free, enough in total for the waiting request but no run long enough), short (free, too
        little for it). The five sum to 100; `waste` is everything but tokens. Empty if never memory-bound."""
        if not self.bound_steps:
            return {}
        out = {k: 100.0 * self.slots[k] / (self.bound_steps * self.budget) for k in CLASSES}
        out["internal"] = out["future"] + out["never"]
        out["waste"] = 100.0 - out["tokens"]
        return out

    def latency_stats(self) -> dict:
        lat = self.latency.astype(float)
        return {"mean": lat.mean(), "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                "var": lat.var(), "std": lat.std(), "wait_mean": self.wait.mean(),
                "per_token_mean": (lat / self.trace.output).mean()}

    @property
    def throughput(self) -> float:
        """Requests finished per memory-bound step: the capacity when the queue never empties."""
        return self.bound_finished / self.bound_steps if self.bound_steps else float("nan")

    @property
    def batch_bound(self) -> float:
        """Mean number of running requests over the memory-bound steps: the batch memory allows."""
        return self.bound_batch_sum / self.bound_steps if self.bound_steps else float("nan")

    @property
    def batch_busy(self) -> float:
        """Mean number of running requests over every step with something to run."""
        return self.batch_sum / self.steps if self.steps else float("nan")


def simulate(trace: Trace, allocator: str, budget: int, max_len: int, block: int = 16, max_batch: int = 256,
             watermark: float = 0.01) -> SimResult:
    """Run `trace` through one allocator step by step (module docstring); deterministic.

    Paged admission keeps `watermark` of the blocks free for running sequences to grow into, as vLLM does."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"unknown allocator {allocator!r}; use one of {ALLOCATORS}")
    if budget < max_len or (allocator == "paged" and budget % block):
        raise ValueError("the budget must hold one max_len request (and whole blocks when paged)")
    n, paged = len(trace), allocator == "paged"
    prompt, final, arrival = trace.prompt, trace.final, trace.arrival
    held = np.zeros(n, np.int64)        # A: slots allocated
    length = np.zeros(n, np.int64)      # L: token states written
    start, finish, preempted = np.full(n, -1), np.full(n, -1), np.zeros(n, np.int64)
    addr = np.zeros(n, np.int64)
    made = np.zeros(n, np.int64)        # output tokens generated so far (kept through a preemption)
    space = None if paged else FirstFit(budget)
    free_blocks, keep = budget // block, int(watermark * budget // block)
    queue, running = deque(), []
    slots = dict.fromkeys(CLASSES, 0)
    t = nxt = done = steps = batch_sum = bound_steps = bound_batch = bound_finished = 0
    while done < n:
        while nxt < n and arrival[nxt] <= t:
            queue.append(nxt)
            nxt += 1
        if not running and not queue:  # idle: jump to the next arrival
            t = int(arrival[nxt])
            continue
        if paged:  # 1. each sequence whose last block is full takes one more, preempting the latest arrivals
            need, victims = grow(running, length, held, block, free_blocks)
            for v in victims:
                running.remove(v)
                free_blocks += int(held[v]) // block
                held[v] = length[v] = 0
                preempted[v] += 1
                queue.appendleft(v)                  # it arrived before every request still waiting
            free_blocks -= len(need)
            held[need] += block
        blocked = False  # 2. admit first-come first-served, stopping at the first that does not fit
        while queue and len(running) < max_batch:
            i = queue[0]
            first = int(prompt[i] + made[i] + 1)     # its first step: (re)prefill, then one new token
            if paged:
                size = paged_slots(first, block)
                if free_blocks - size // block < (keep if running else 0):
                    blocked = True
                    break
                free_blocks -= size // block
                held[i] = size
            else:
                size = reservation(allocator, final[i], max_len)
                a = space.alloc(size)
                if a is None:
                    blocked = True
                    break
                addr[i], held[i] = a, size
            queue.popleft()
            running.append(i)
            length[i] = first - 1                    # the write below adds the step's new token
            if start[i] < 0:
                start[i] = t
        r = np.array(running, dtype=np.int64)     # 3. every running request writes one token
        length[r] += 1
        made[r] += 1
        steps += 1
        batch_sum += len(r)
        if blocked:  # 4. memory keeps a request out: account for every slot of the budget
            tok, fut, nev = slot_classes(held[r], length[r], final[r])
            free = budget - int(held[r].sum())
            head = queue[0]
            stranded = not paged and space.free_total >= reservation(allocator, final[head], max_len)
            for k, v in zip(CLASSES, (tok, fut, nev, free if stranded else 0, 0 if stranded else free)):
                slots[k] += v
            bound_steps += 1
            bound_batch += len(r)
        t += 1
        for i in r[length[r] == final[r]].tolist():  # 5. finished requests give their memory back
            if paged:
                free_blocks += int(held[i]) // block
            else:
                space.free(int(addr[i]), int(held[i]))
            held[i] = 0
            finish[i] = t
            running.remove(i)
            done += 1
            bound_finished += blocked
    return SimResult(allocator, block if paged else 0, budget, trace, start, finish, preempted, steps, batch_sum,
                     bound_steps, bound_batch, bound_finished, slots)
